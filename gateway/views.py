"""The OpenAI-compatible API: POST chat/completions (stream and non-stream) and GET models.

Async views: the rules run in a thread (gateway.services), the upstream call is awaited with
no transaction open, and streams pass chunks through as they arrive.
"""

import asyncio
import functools
import json
import logging
import math
import re
import time

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError
from django.http import JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from billing.selectors import text_tokens
from gateway import errors, services, settlement, simulator, upstream
from gateway.models import UpstreamRoute

ROLES = {"system", "user", "assistant", "tool"}

logger = logging.getLogger(__name__)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class InvalidBody(ValueError):
    """A body refused before it is read: not JSON (NaN and Infinity are not JSON either),
    nested deeper than the parser goes, or holding what PostgreSQL cannot store (NUL
    characters, unpaired surrogates, numbers too large to be finite): an answer of 400, not a
    500 when the usage record or the prompt log is written."""


# NUL, and the surrogates that only a JSON escape (\ud800) can put in a Python string.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Control characters: a client's request_id comes back in a header.
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def _not_json(constant: str):
    raise ValueError(f"{constant} is not JSON")


def parse_body(raw: bytes):
    """The request body as JSON, or InvalidBody with the reason."""
    try:
        body = json.loads(raw, parse_constant=_not_json)
    except RecursionError:
        raise InvalidBody("The body is nested too deeply.") from None
    except ValueError:  # UnicodeDecodeError included
        raise InvalidBody("The body is not valid JSON.") from None
    # Walked without recursion: the parser allows more depth than a recursive walk would.
    pending = [body]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif (isinstance(value, str) and _UNSTORABLE.search(value)) or (
            isinstance(value, float) and not math.isfinite(value)
        ):
            raise InvalidBody(
                "The body contains NUL characters, unpaired surrogates or numbers too large."
            )
    return body


def _content_ok(content) -> bool:
    """A message's content as the API documents it: text, null, or a list of parts (objects)
    whose text, when they have one, is text."""
    if content is None or isinstance(content, str):
        return True
    return isinstance(content, list) and all(
        isinstance(part, dict) and isinstance(part.get("text", ""), str) for part in content
    )


def client_request_id_of(body) -> str:
    """The caller's own id for the request when it is a valid one (validate refuses the
    rest): it is stored with the usage record, and sent back in a header."""
    value = body.get("request_id") if isinstance(body, dict) else None
    if isinstance(value, str) and len(value) <= 128 and not _CONTROL.search(value):
        return value
    return ""


def validate(body) -> tuple[errors.Refusal, str] | None:
    """Refuse only what the real API refuses; null-valued optional parameters are fine."""
    if not isinstance(body, dict):
        return errors.INVALID_PARAMETERS, "The body must be a JSON object."
    model = body.get("model")
    if not isinstance(model, str) or not model or len(model) > 64:
        return errors.INVALID_PARAMETERS, "model is required."
    messages = body.get("messages")
    if (
        not isinstance(messages, list)
        or not messages
        or not all(
            isinstance(message, dict)
            and isinstance(message.get("role"), str)  # a list or an object is not hashable
            and message["role"] in ROLES
            and _content_ok(message.get("content"))
            for message in messages
        )
    ):
        return errors.INVALID_MESSAGES, errors.INVALID_MESSAGES.message
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (
        not isinstance(max_tokens, int)
        or isinstance(max_tokens, bool)
        or not 1 <= max_tokens <= 10**6
    ):
        return errors.INVALID_PARAMETERS, "max_tokens must be an integer from 1 to 1000000."
    choices = body.get("n")
    if choices is not None and (
        not isinstance(choices, int) or isinstance(choices, bool) or choices != 1
    ):
        # BigModel answers one choice per request; more would multiply the bill past the
        # estimate that admission reserved.
        return errors.INVALID_PARAMETERS, "n must be 1: one choice per request is supported."
    for name, low, high in (("temperature", 0, 2), ("top_p", 0, 1)):
        value = body.get(name)
        if value is not None and (not _is_number(value) or not low <= value <= high):
            return errors.INVALID_PARAMETERS, f"{name} must be a number from {low} to {high}."
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        return errors.INVALID_PARAMETERS, "stream must be true or false."
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        return errors.INVALID_PARAMETERS, "stream_options must be an object."
    request_id = body.get("request_id")
    if request_id is not None and (not isinstance(request_id, str) or len(request_id) > 128):
        return errors.INVALID_PARAMETERS, "request_id must be a string of at most 128 characters."
    if request_id is not None and _CONTROL.search(request_id):
        return errors.INVALID_PARAMETERS, "request_id must not contain control characters."
    return None


def _headers(request_id: str, extra: dict | None = None) -> dict:
    return {"x-request-id": request_id, **(extra or {})}


async def refuse(refused, *, request_id, body, client_request_id, stream):
    """Record a refusal (if it passed authentication) and answer BigModel's error body; the
    API and the console's playground both answer refusals this way."""
    await sync_to_async(services.record_refusal)(
        refused=refused,
        request_id=request_id,
        body=body,
        client_request_id=client_request_id,
        stream=stream,
    )
    return errors.error_response(
        refused.refusal,
        message=refused.message,
        headers=_headers(request_id, refused.rate_headers),
    )


def _upstream_body(body: dict, route) -> dict:
    forwarded = {k: v for k, v in body.items() if v is not None and k != "request_id"}
    if not route.is_simulator:
        forwarded.pop("simulator", None)
    if body.get("stream"):
        # Always ask for usage: the bill comes from it. The client sees the usage chunk only
        # if it asked for it.
        forwarded["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return forwarded


def answers_database_outage(view):
    """The database unreachable (stopped, restarting, the pool's wait for a connection over):
    BigModel's error body with 503 / 1241 and the request's id, not a 500 page. Whatever
    failed ran in a transaction that rolled back, and admission gives back what it took."""

    @functools.wraps(view)
    async def wrapper(request, *args, **kwargs):
        request_id = services.new_request_id()
        try:
            return await view(request, request_id, *args, **kwargs)
        except DatabaseError as error:
            logger.warning("gateway: database unavailable, request %s: %s", request_id, error)
            return errors.error_response(errors.DATABASE_UNAVAILABLE, headers=_headers(request_id))

    return wrapper


def gateway_fast_path(view):
    """The view skips the page middleware (console/middleware.py, gateway_fast_path)."""
    view.gateway_fast_path = True
    return view


@gateway_fast_path
@csrf_exempt
@answers_database_outage
async def chat_completions(request, request_id):
    if request.method != "POST":
        return errors.error_response(errors.METHOD, headers=_headers(request_id))
    length = request.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > settings.GATEWAY_MAX_BODY_BYTES:
        return errors.error_response(errors.BODY_TOO_LARGE, headers=_headers(request_id))
    body = None
    raw = request.body
    if len(raw) > settings.GATEWAY_MAX_BODY_BYTES:
        # Refused before the key is looked at, as the Content-Length check above.
        return errors.error_response(errors.BODY_TOO_LARGE, headers=_headers(request_id))
    try:
        body = parse_body(raw)
    except InvalidBody as error:
        body = None
        invalid = (errors.INVALID_PARAMETERS, str(error))
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
    )
    if isinstance(admitted, services.Refused):
        return errors.error_response(
            admitted.refusal,
            message=admitted.message,
            headers=_headers(request_id, admitted.rate_headers),
        )
    headers = _headers(request_id, admitted.rate_headers)
    if client_request_id:
        headers["x-client-request-id"] = client_request_id[:128]
    if stream:
        return StreamingHttpResponse(
            stream_events(admitted, body, client_request_id),
            content_type="text/event-stream",
            headers={**headers, "cache-control": "no-cache"},
        )
    return await _complete(admitted, body, client_request_id, headers)


async def _finish(admitted, body, outcome, client_request_id, stream):
    """Settle and release in one thread call, shielded: a client leaving must not cancel the
    bookkeeping halfway."""

    def work():
        try:
            return settlement.settle(
                admitted=admitted,
                body=body,
                outcome=outcome,
                client_request_id=client_request_id,
                stream=stream,
            )
        finally:
            services.release(admitted)

    return await asyncio.shield(sync_to_async(work)())


async def _complete(admitted, body, client_request_id, headers):
    started = time.perf_counter()
    try:
        result = await upstream.complete(admitted.route, _upstream_body(body, admitted.route))
    except upstream.UpstreamFailed as failure:
        refusal = errors.UPSTREAM_TIMEOUT if failure.timeout else errors.UPSTREAM_ERROR
        outcome = services.Outcome(
            status=refusal.status,
            code=refusal.code,
            latency_ms=int((time.perf_counter() - started) * 1000),
        )
        await _finish(admitted, body, outcome, client_request_id, False)
        return errors.error_response(refusal, headers=headers)
    except BaseException:
        await sync_to_async(services.release)(admitted)
        raise
    usage = _dict(result.get("usage"))
    choices = result.get("choices")
    message = _dict(
        _dict(choices[0] if isinstance(choices, list) and choices else {}).get("message")
    )
    text = str(message.get("content") or "")
    # The text and any tool calls are output, counted where the upstream reported none.
    calls = message.get("tool_calls")
    answered = text + (json.dumps(calls, ensure_ascii=False) if calls else "")
    outcome = services.Outcome(
        status=200,
        **_billed_tokens(usage, admitted, counted_output=text_tokens(len(answered))),
        response_text=text,
        latency_ms=int((time.perf_counter() - started) * 1000),
    )
    await _finish(admitted, body, outcome, client_request_id, False)
    result["model"] = body["model"]
    if client_request_id:
        result["request_id"] = client_request_id
    return JsonResponse(result, headers=headers, json_dumps_params={"ensure_ascii": False})


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _billed_tokens(usage, admitted, *, counted_output: int) -> dict:
    """The tokens to bill: as the upstream reported them, or where it reported none (or
    something that is not a count) the prompt's estimate as input and our own count of the
    output, marked estimated. The same rule for answers and streams."""
    reported_input = _token_count(_dict(usage).get("prompt_tokens"))
    reported_output = _token_count(_dict(usage).get("completion_tokens"))
    return {
        "input_tokens": admitted.estimate.input_tokens
        if reported_input is None
        else reported_input,
        "output_tokens": counted_output if reported_output is None else reported_output,
        "estimated": reported_input is None or reported_output is None,
    }


def _token_count(value) -> int | None:
    """A token count the upstream reported, or None where it reported none or something
    that is not a count (a string, a negative or fractional number): then it is counted."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if value < 0 or value != int(value):
        return None
    return int(value)


def _sse(data) -> str:
    return "data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n\n"


async def stream_events(admitted, body, client_request_id):
    """An admitted stream as SSE text: the upstream's chunks as they arrive, then the
    settlement, then `[DONE]`. The API and the console's playground both stream with it.
    One request, one settlement: whichever path settles marks it first, so a settlement
    that fails is never followed by another."""
    started = time.perf_counter()
    first_token_ms = None
    wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    parts: list[str] = []
    usage = None
    delivered_chunks = 0
    settled = False
    renewed_at = time.monotonic()

    def counted(**fields) -> services.Outcome:
        """What was delivered, billed as the upstream reported it, or else counted (the
        prompt's estimate as input, a token per chunk delivered) and marked estimated."""
        return services.Outcome(
            **_billed_tokens(usage, admitted, counted_output=delivered_chunks),
            response_text="".join(parts),
            latency_ms=int((time.perf_counter() - started) * 1000),
            first_token_ms=first_token_ms,
            **fields,
        )

    try:
        async for chunk in upstream.stream(admitted.route, _upstream_body(body, admitted.route)):
            if chunk.get("usage"):
                usage = chunk["usage"]
                if not wants_usage:
                    continue
            choices = chunk.get("choices")
            for choice in choices if isinstance(choices, list) else []:
                delta = _dict(_dict(choice).get("delta"))
                text = delta.get("content")
                if text or delta.get("tool_calls"):
                    # A tool call's arguments are output as much as text is.
                    if text:
                        parts.append(str(text))
                    delivered_chunks += 1
                    if first_token_ms is None:
                        first_token_ms = int((time.perf_counter() - started) * 1000)
            chunk["model"] = body["model"]
            yield _sse(chunk)
            if time.monotonic() - renewed_at >= services.renewal_interval():
                # A stream may outlive GATEWAY_RESERVATION_TTL: keep its slot and holds.
                renewed_at = time.monotonic()
                await sync_to_async(services.keep_alive)(admitted)
        settled = True
        # The usage record is committed before the final [DONE].
        if await _settle_or_tell(admitted, body, counted(status=200), client_request_id):
            yield "data: [DONE]\n\n"
        else:
            yield _sse(_error_event(errors.DATABASE_UNAVAILABLE))
    except upstream.UpstreamFailed as failure:
        refusal = errors.UPSTREAM_TIMEOUT if failure.timeout else errors.UPSTREAM_ERROR
        settled = True
        if delivered_chunks:
            # Part of the answer reached the client: billed as for a client that left.
            outcome = counted(status=refusal.status, code=refusal.code, partial=True)
            message = _PARTIAL_MESSAGE
        else:
            outcome = services.Outcome(
                status=refusal.status,
                code=refusal.code,
                latency_ms=int((time.perf_counter() - started) * 1000),
            )
            message = refusal.message
        if await _settle_or_tell(admitted, body, outcome, client_request_id):
            yield _sse(_error_event(refusal, message))
        else:
            yield _sse(_error_event(errors.DATABASE_UNAVAILABLE))
    finally:
        if not settled:
            # The client left mid-stream: bill what the upstream reported, or else count the
            # output delivered and mark the record as estimated.
            await _finish(
                admitted, body, counted(status=200, code="client_closed"), client_request_id, True
            )


_PARTIAL_MESSAGE = "The model service failed mid-answer; the part delivered is charged."


def _error_event(refusal: errors.Refusal, message: str | None = None) -> dict:
    return {"error": {"code": refusal.code, "message": message or refusal.message}}


async def _settle_or_tell(admitted, body, outcome, client_request_id) -> bool:
    """Settle a stream; False when the database refused (the transaction rolled back, so
    nothing is charged): the client is told so instead of seeing the connection cut."""
    try:
        await _finish(admitted, body, outcome, client_request_id, True)
    except DatabaseError as error:
        logger.warning("gateway: database unavailable, request %s: %s", admitted.request_id, error)
        return False
    return True


@gateway_fast_path
@csrf_exempt
@answers_database_outage
async def models(request, request_id):
    if request.method != "GET":
        return errors.error_response(errors.METHOD, headers=_headers(request_id))
    auth = await sync_to_async(services.authenticate)(request.headers.get("Authorization"))
    if isinstance(auth, services.Refused):
        return errors.error_response(auth.refusal, headers=_headers(request_id))

    def listing():
        return list(
            UpstreamRoute.objects.filter(enabled=True)
            .order_by("model")
            .values_list("model", flat=True)
        )

    names = await sync_to_async(listing)()
    return JsonResponse(
        {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": 0, "owned_by": "zhipuai"}
                for name in names
            ],
        },
        headers=_headers(request_id),
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
                yield _sse(chunk)
            yield "data: [DONE]\n\n"

        return StreamingHttpResponse(events(), content_type="text/event-stream")
    return JsonResponse(await simulator.complete(body), json_dumps_params={"ensure_ascii": False})
