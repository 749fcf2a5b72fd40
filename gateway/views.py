"""The OpenAI-compatible API: POST chat/completions (stream and non-stream) and GET models;
the Anthropic-compatible Messages API (issue 23): POST v1/messages and its count_tokens.

Async views: the rules run in a thread (gateway.services), the upstream call is awaited with
no transaction open (gateway.relay), and streams pass chunks through as they arrive. The
body is read and checked, and events are formatted, by gateway.protocol.
"""

import functools
import logging

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError
from django.http import JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from console import api_errors
from gateway import anthropic, messages, relay, services, simulator
from gateway.protocol import (
    SSE_DONE,
    InvalidBody,
    client_request_id_of,
    model_list,
    parse_body,
    response_headers,
    sse,
    validate,
)
from gateway.selectors import enabled_models

logger = logging.getLogger(__name__)


def _database_outage_answered(respond):
    """The database unreachable (stopped, restarting, the pool's wait for a connection over):
    the API's error body (`respond(refusal, request_id)`) with 1241 and the request's id, not
    a 500 page. Whatever failed ran in a transaction that rolled back, and admission gives
    back what it took."""

    def decorator(view):
        @functools.wraps(view)
        async def wrapper(request, *args, **kwargs):
            request_id = services.new_request_id()
            try:
                return await view(request, request_id, *args, **kwargs)
            except DatabaseError as error:
                logger.warning("gateway: database unavailable, request %s: %s", request_id, error)
                return respond(api_errors.DATABASE_UNAVAILABLE, request_id)

        return wrapper

    return decorator


# BigModel's body with 503 / 1241; Anthropic's shape with 529 overloaded_error.
answers_database_outage = _database_outage_answered(
    lambda refusal, request_id: api_errors.error_response(
        refusal, headers=response_headers(request_id)
    )
)
answers_database_outage_anthropic = _database_outage_answered(
    lambda refusal, request_id: _refused(services.Refused(refusal), request_id)
)


def _anthropic_headers(request_id: str, extra: dict | None = None) -> dict:
    # Anthropic's clients read `request-id` (the SDK's `_request_id`); ours is x-request-id.
    return response_headers(request_id, {"request-id": request_id, **(extra or {})})


def gateway_fast_path(view):
    """The view skips the page middleware (console/middleware.py, gateway_fast_path)."""
    view.gateway_fast_path = True
    return view


@gateway_fast_path
@csrf_exempt
@answers_database_outage
async def chat_completions(request, request_id):
    """Pay-as-you-go: billed to the wallet (packs first)."""
    return await _chat_completions(
        request, request_id, endpoint=services.UsageRecord.Endpoint.OPENAI
    )


@gateway_fast_path
@csrf_exempt
@answers_database_outage
async def coding_chat_completions(request, request_id):
    """The coding endpoint (issue 22): the same API and key, billed to the account's coding
    plan and limited by its quota windows, never by the balance."""
    return await _chat_completions(
        request, request_id, endpoint=services.UsageRecord.Endpoint.CODING
    )


async def _chat_completions(request, request_id, *, endpoint: str):
    if request.method != "POST":
        return api_errors.error_response(api_errors.METHOD, headers=response_headers(request_id))
    length = request.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > settings.GATEWAY_MAX_BODY_BYTES:
        return api_errors.error_response(
            api_errors.BODY_TOO_LARGE, headers=response_headers(request_id)
        )
    body = None
    raw = request.body
    if len(raw) > settings.GATEWAY_MAX_BODY_BYTES:
        # Refused before the key is looked at, as the Content-Length check above.
        return api_errors.error_response(
            api_errors.BODY_TOO_LARGE, headers=response_headers(request_id)
        )
    try:
        body = parse_body(raw)
    except InvalidBody as error:
        body = None
        invalid = (api_errors.INVALID_PARAMETERS, str(error))
    else:
        invalid = validate(body)
    client_request_id = client_request_id_of(body)
    stream = bool(isinstance(body, dict) and body.get("stream"))
    # Key, body check, limits and reservation, and a refusal's usage record: one thread hop.
    admitted = await sync_to_async(services.admit_request)(
        header=request.headers.get("Authorization"),
        body=body,
        invalid=invalid,
        request_id=request_id,
        client_request_id=client_request_id,
        stream=stream,
        endpoint=endpoint,
    )
    if isinstance(admitted, services.Refused):
        return relay.refusal_response(admitted, request_id=request_id)
    headers = response_headers(request_id, admitted.rate_headers)
    if client_request_id:
        headers["x-client-request-id"] = client_request_id[:128]
    if stream:
        return StreamingHttpResponse(
            relay.stream_events(admitted, body, client_request_id),
            content_type="text/event-stream",
            headers={**headers, "cache-control": "no-cache"},
        )
    return await relay.answer(admitted, body, client_request_id, headers)


@gateway_fast_path
@csrf_exempt
@answers_database_outage
async def models(request, request_id):
    if request.method != "GET":
        return api_errors.error_response(api_errors.METHOD, headers=response_headers(request_id))
    auth = await sync_to_async(services.authenticate)(request.headers.get("Authorization"))
    if isinstance(auth, services.Refused):
        return api_errors.error_response(auth.refusal, headers=response_headers(request_id))
    names = await sync_to_async(enabled_models)()
    return JsonResponse(model_list(names), headers=response_headers(request_id))


@gateway_fast_path
@csrf_exempt
@answers_database_outage
async def coding_models(request, request_id):
    """The models the account's coding plan covers (1309 without a plan in force)."""
    if request.method != "GET":
        return api_errors.error_response(api_errors.METHOD, headers=response_headers(request_id))
    names = await sync_to_async(services.plan_models)(request.headers.get("Authorization"))
    if isinstance(names, services.Refused):
        return relay.refusal_response(names, request_id=request_id)
    return JsonResponse(model_list(names), headers=response_headers(request_id))


def _key_header(request) -> str | None:
    """The key as the Authorization header carries it: Anthropic's clients send x-api-key
    (the SDK), or Authorization: Bearer (Claude Code with ANTHROPIC_AUTH_TOKEN)."""
    key = request.headers.get("x-api-key")
    return f"Bearer {key}" if key else request.headers.get("Authorization")


def _messages_body(request, check) -> tuple[object, str | None] | api_errors.Refusal:
    """The body, parsed, and what is malformed in it (`check`) or None; the refusal instead
    for a method other than POST, or a body over GATEWAY_ANTHROPIC_MAX_BODY_BYTES. Read from
    the stream: the endpoint's limit is its own, not the console's DATA_UPLOAD_MAX_MEMORY_SIZE."""
    if request.method != "POST":
        return api_errors.METHOD
    limit = settings.GATEWAY_ANTHROPIC_MAX_BODY_BYTES
    length = request.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > limit:
        return api_errors.BODY_TOO_LARGE  # refused before anything is read
    raw = request.read(limit + 1)
    if len(raw) > limit:
        return api_errors.BODY_TOO_LARGE
    try:
        body = parse_body(raw)
    except InvalidBody as error:
        return None, str(error)
    return body, check(body)


def _refused(refused: services.Refused, request_id: str):
    return messages.error_response(
        refused.refusal,
        request_id=request_id,
        message=refused.message,
        headers=_anthropic_headers(request_id, refused.rate_headers),
    )


@gateway_fast_path
@csrf_exempt
@answers_database_outage_anthropic
async def anthropic_messages(request, request_id):
    """POST /api/anthropic/v1/messages: billed to the account's coding plan when it has one
    in force, else pay-as-you-go (gateway.services.admit_messages)."""
    read = _messages_body(request, anthropic.validate)
    if isinstance(read, api_errors.Refusal):
        return _refused(services.Refused(read), request_id)
    body, invalid = read
    stream = bool(isinstance(body, dict) and body.get("stream") is True)
    admitted = await sync_to_async(services.admit_request)(
        header=_key_header(request),
        body=body,
        invalid=(api_errors.INVALID_PARAMETERS, invalid) if invalid else None,
        request_id=request_id,
        client_request_id="",
        stream=stream,
        endpoint=services.UsageRecord.Endpoint.ANTHROPIC,
    )
    if isinstance(admitted, services.Refused):
        return _refused(admitted, request_id)
    headers = _anthropic_headers(request_id, admitted.rate_headers)
    beta = request.headers.get("anthropic-beta", "")
    if stream:
        return StreamingHttpResponse(
            messages.stream_events(admitted, body, beta=beta),
            content_type="text/event-stream",
            headers={**headers, "cache-control": "no-cache"},
        )
    return await messages.answer(admitted, body, headers, beta=beta)


@gateway_fast_path
@csrf_exempt
@answers_database_outage_anthropic
async def anthropic_count_tokens(request, request_id):
    """POST /api/anthropic/v1/messages/count_tokens: free, no usage record, not a prompt."""
    read = _messages_body(request, anthropic.count_request_problem)
    if isinstance(read, api_errors.Refusal):
        return _refused(services.Refused(read), request_id)
    body, invalid = read
    counted = await sync_to_async(services.count_tokens)(
        header=_key_header(request), body=body, invalid=invalid
    )
    if isinstance(counted, services.Refused):
        return _refused(counted, request_id)
    return JsonResponse({"input_tokens": counted}, headers=_anthropic_headers(request_id))


@csrf_exempt
async def simulator_messages(request):
    """The simulator's Anthropic Messages API over HTTP (no key, no accounting): for routes
    of the Anthropic protocol that reach it through the real upstream path."""
    try:
        body = parse_body(request.body)
    except InvalidBody:
        body = None
    if request.method != "POST" or anthropic.validate(body) is not None:
        return JsonResponse(
            {"type": "error", "error": {"type": "invalid_request_error"}}, status=400
        )
    if body.get("stream"):

        async def events():
            async for event in simulator.messages_stream(body):
                yield anthropic.sse_event(event)

        return StreamingHttpResponse(events(), content_type="text/event-stream")
    return JsonResponse(
        await simulator.messages_complete(body), json_dumps_params={"ensure_ascii": False}
    )


@csrf_exempt
async def simulator_chat(request):
    """The simulator over HTTP (no key, no accounting): for routes that reach it through the
    real upstream path, and for benchmarks that call it directly."""
    try:
        body = parse_body(request.body)
    except InvalidBody:
        return JsonResponse({"error": {"message": "invalid JSON"}}, status=400)
    if request.method != "POST" or validate(body) is not None:
        return JsonResponse({"error": {"message": "invalid request"}}, status=400)
    if body.get("stream"):

        async def events():
            async for chunk in simulator.stream(body):
                yield sse(chunk)
            yield SSE_DONE

        return StreamingHttpResponse(events(), content_type="text/event-stream")
    return JsonResponse(await simulator.complete(body), json_dumps_params={"ensure_ascii": False})
