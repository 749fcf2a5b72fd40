"""The Anthropic-compatible endpoint's answers (issue 23): an admitted Messages request
forwarded to its route's upstream (as it is to an Anthropic-protocol upstream, translated
both ways for an OpenAI-protocol one: gateway/anthropic.py), settled through gateway.relay's
settlement and release, and answered as a `message` object or as Anthropic's stream events.

A stream's events go out as they arrive; `ping` events fill the silences while the upstream
thinks (GATEWAY_ANTHROPIC_PING_SECONDS); the settlement commits before `message_stop`; an
upstream failure after the stream began ends it with an `error` event."""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError
from django.http import JsonResponse

from billing.selectors import text_tokens
from console import api_errors
from gateway import anthropic, relay, services, upstream
from gateway.models import Protocol
from gateway.protocol import upstream_body as openai_upstream_body

logger = logging.getLogger(__name__)


# Refusals a retry cannot cure before a person acts (a used-up plan window resets in hours;
# money and caps need someone): Anthropic's SDKs retry every 429 after its Retry-After, and
# the Python SDK would sleep until a 5-hour window resets. They obey x-should-retry.
NOT_RETRIED = {
    api_errors.PLAN_FIVE_HOURS.code,
    api_errors.PLAN_WEEK_OR_MONTH.code,
    api_errors.ARREARS.code,
    api_errors.PROJECT_CAP.code,
    api_errors.ACCOUNT_BUDGET.code,
}


def error_response(refusal, *, request_id: str, message=None, headers=None) -> JsonResponse:
    """A refusal in Anthropic's error shape, with the status this endpoint answers it with."""
    refusal = anthropic.refusal_for(refusal)
    headers = dict(headers or {})
    if refusal.code in NOT_RETRIED:
        headers["x-should-retry"] = "false"
    return api_errors.error_response(
        refusal, headers=headers, body=anthropic.error_body(refusal, message, request_id=request_id)
    )


# The upstream refused the request itself (too long, a bad image, max_tokens over the
# model's): the client's to fix, so not the 500 a retry would repeat; nothing is charged.
UPSTREAM_REFUSED = api_errors.Refusal(
    400, api_errors.INVALID_PARAMETERS.code, "The model service refused the request."
)
# The upstream is over its own rate limit: busy, so Anthropic's overloaded (retried later).
UPSTREAM_BUSY = api_errors.Refusal(
    529, api_errors.UPSTREAM_ERROR.code, "The model service is busy; nothing was charged."
)


def upstream_failure(failure: upstream.UpstreamFailed) -> tuple[api_errors.Refusal, str | None]:
    """An upstream failure as this endpoint answers it, and the message to give. A 400, 413
    or 422 of the upstream is the request's fault: refused with the upstream's own words
    (and its code when it gave one, such as BigModel's), so Claude Code sees "prompt is too
    long" and a client does not retry it. A 429 is a busy upstream; anything else (a 5xx, or
    a 401/403/404 that says the route is misconfigured) is the gateway's 500."""
    if failure.status in (400, 413, 422):
        error = failure.error or {}
        code = error.get("code")
        code = str(code)[:16] if isinstance(code, str | int) and not isinstance(code, bool) else ""
        said = error.get("message") if isinstance(error.get("message"), str) else ""
        refusal = api_errors.Refusal(
            413 if failure.status == 413 else 400,
            code or UPSTREAM_REFUSED.code,
            UPSTREAM_REFUSED.message,
        )
        message = f"{UPSTREAM_REFUSED.message} {said[:1000]}".strip() if said else None
        return refusal, message
    if failure.status == 429:
        return UPSTREAM_BUSY, None
    return anthropic.refusal_for(relay.upstream_refusal(failure)), None


def _message_id(admitted) -> str:
    return "msg_" + admitted.request_id


def _forwards_as_is(admitted) -> bool:
    return admitted.route.protocol == Protocol.ANTHROPIC


# --- A message -----------------------------------------------------------------------------


async def answer(admitted, body: dict, headers: dict, *, beta: str = "") -> JsonResponse:
    """Forward a request that is not a stream and answer with the message, once the
    settlement committed. The message names the model as the client asked for it."""
    chat = admitted.chat_body
    route = admitted.route
    started = time.perf_counter()
    try:
        if _forwards_as_is(admitted):
            forwarded = anthropic.upstream_body(body, route, chat["model"])
            message = await upstream.messages_complete(route, forwarded, beta=beta)
            usage = anthropic.reported_usage(message.get("usage"))
        else:
            result = await upstream.complete(route, openai_upstream_body(chat, route))
            usage = result.get("usage")
            message = anthropic.message_from_openai(
                result,
                message_id=_message_id(admitted),
                model=body["model"],
                input_estimate=admitted.estimate.input_tokens,
            )
    except upstream.UpstreamFailed as failure:
        refusal, said = upstream_failure(failure)
        outcome = relay.outcome_since(started, status=refusal.status, code=refusal.code)
        await relay.finish(admitted, chat, outcome, "", False)
        return error_response(
            refusal, request_id=admitted.request_id, message=said, headers=headers
        )
    except BaseException:
        await sync_to_async(services.release)(admitted)
        raise
    text, output = anthropic.message_text(message)
    billed = relay.billed_tokens(usage, admitted, counted_output=text_tokens(len(output)))
    outcome = relay.outcome_since(started, status=200, **billed, response_text=text)
    await relay.finish(admitted, chat, outcome, "", False)
    message["model"] = body["model"]
    return JsonResponse(message, headers=headers, json_dumps_params={"ensure_ascii": False})


# --- A stream ------------------------------------------------------------------------------


async def _upstream_events(admitted, body: dict, delivered, beta: str) -> AsyncIterator[dict]:
    """The upstream's answer as Anthropic's stream events, noting in `delivered` the usage
    it reports (as the OpenAI usage object the bill is read from)."""
    chat, route = admitted.chat_body, admitted.route
    if _forwards_as_is(admitted):
        forwarded = anthropic.upstream_body(body, route, chat["model"])
        started_usage = None
        async for event in upstream.messages_stream(route, forwarded, beta=beta):
            if event.get("type") == "message_start":
                message = event.get("message")
                started_usage = message.get("usage") if isinstance(message, dict) else None
                delivered.usage = anthropic.reported_usage(started_usage) or None
            elif event.get("type") == "message_delta":
                delivered.usage = anthropic.reported_usage(started_usage, event.get("usage"))
            yield event
        return
    translator = anthropic.StreamTranslator(
        message_id=_message_id(admitted),
        model=body["model"],
        input_estimate=admitted.estimate.input_tokens,
    )
    yield translator.opening_event()
    yield {"type": "ping"}  # as Anthropic sends one after message_start
    async for chunk in upstream.stream(route, openai_upstream_body(chat, route)):
        for event in translator.events_of(chunk):
            yield event
        delivered.usage = translator.usage
    for event in translator.closing_events():
        yield event


async def _with_pings(events: AsyncIterator[dict], interval: float) -> AsyncIterator[dict | None]:
    """`events`, with None whenever `interval` seconds pass without one (a ping is due). The
    upstream is read in one task of its own, so a silence never interrupts its reading."""
    queue: asyncio.Queue = asyncio.Queue(maxsize=64)
    done = object()

    async def produce():
        try:
            async for event in events:
                await queue.put(event)
        except asyncio.CancelledError:
            raise  # the reader is gone: nobody to hand anything to
        except Exception as error:  # handed to the reader, which raises it
            await queue.put(error)
        else:
            await queue.put(done)

    producer = asyncio.ensure_future(produce())
    try:
        while True:
            if queue.empty():
                try:
                    item = await asyncio.wait_for(queue.get(), timeout=interval)
                except TimeoutError:
                    yield None
                    continue
            else:
                item = queue.get_nowait()  # no timer to set while events are waiting
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        producer.cancel()


async def stream_events(admitted, body: dict, *, beta: str = "") -> AsyncIterator[str]:
    """An admitted stream as Anthropic's server-sent events: the upstream's events as they
    arrive (the message named as the client asked), pings in the silences, then the
    settlement, then `message_stop`. One request, one settlement, as in gateway.relay."""
    chat = admitted.chat_body
    delivered = relay.Delivered(admitted)
    renewed_at = time.monotonic()
    settled = False
    interval = settings.GATEWAY_ANTHROPIC_PING_SECONDS
    try:
        # Closed as soon as the stream ends or the client leaves: the upstream's reading
        # stops then, not when the garbage collector gets to it.
        upstream_events = _with_pings(_upstream_events(admitted, body, delivered, beta), interval)
        async with contextlib.aclosing(upstream_events):
            async for event in upstream_events:
                if event is None:
                    yield anthropic.PING
                    continue
                kind = event.get("type")
                if kind == "message_stop":
                    break
                if kind == "message_start" and isinstance(event.get("message"), dict):
                    event["message"]["model"] = body["model"]
                text, output = anthropic.delta_text(event)
                if output:
                    delivered.note_output(text)
                yield anthropic.sse_event(event)
                renewed_at = await relay.renewed_when_due(admitted, renewed_at)
        settled = True
        outcome = delivered.outcome(status=200)
        yield await _closing_event(admitted, chat, outcome, {"type": "message_stop"})
    except upstream.UpstreamFailed as failure:
        settled = True
        refusal, message = upstream_failure(failure)
        if delivered.output_deltas:
            # Part of the answer reached the client: billed as for a client that left.
            outcome = delivered.outcome(status=refusal.status, code=refusal.code, partial=True)
            message = relay.PARTIAL_MESSAGE
        else:
            outcome = relay.outcome_since(
                delivered.started, status=refusal.status, code=refusal.code
            )
        error = anthropic.error_body(refusal, message, request_id=admitted.request_id)
        yield await _closing_event(admitted, chat, outcome, error)
    finally:
        if not settled:
            # The client left mid-stream: billed as gateway.relay bills it.
            outcome = delivered.outcome(status=200, code="client_closed")
            await relay.finish(admitted, chat, outcome, "", True)


async def _closing_event(admitted, chat: dict, outcome, event: dict) -> str:
    """Settle, then the stream's last event; the database's error event instead when the
    settlement could not commit (nothing is charged)."""
    try:
        await relay.finish(admitted, chat, outcome, "", True)
    except DatabaseError as error:
        logger.warning("gateway: database unavailable, request %s: %s", admitted.request_id, error)
        refusal = anthropic.refusal_for(api_errors.DATABASE_UNAVAILABLE)
        event = anthropic.error_body(refusal, request_id=admitted.request_id)
    return anthropic.sse_event(event)
