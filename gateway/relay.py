"""An admitted request carried through: forwarded to its upstream with no transaction open,
settled (the charge, the usage record, the prompt log) and released, as a JSON answer or as
a stream of server-sent events; and a refusal answered. The API (gateway/views.py) and the
console's playground (gateway/playground.py) both answer through it."""

import asyncio
import logging
import time
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.db import DatabaseError
from django.http import JsonResponse

from billing.selectors import text_tokens
from console import api_errors
from gateway import services, settlement, upstream
from gateway.protocol import (
    SSE_DONE,
    answer_output,
    chunk_output,
    reported_tokens,
    response_headers,
    sse,
    sse_error,
    upstream_body,
    wants_usage,
)

logger = logging.getLogger(__name__)

PARTIAL_MESSAGE = "The model service failed mid-answer; the part delivered is charged."


# --- Refusals ------------------------------------------------------------------------------


def refusal_response(refused: services.Refused, *, request_id: str) -> JsonResponse:
    return api_errors.error_response(
        refused.refusal,
        message=refused.message,
        headers=response_headers(request_id, refused.rate_headers),
    )


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
    return refusal_response(refused, request_id=request_id)


# --- Settlement ----------------------------------------------------------------------------


def outcome_since(started: float, *, status: int, code: str = "", **fields) -> services.Outcome:
    """What happened to a forwarded request, to settle it; its latency runs from `started`
    (a time.perf_counter reading taken before the upstream call)."""
    latency_ms = int((time.perf_counter() - started) * 1000)
    return services.Outcome(status=status, code=code, latency_ms=latency_ms, **fields)


def upstream_refusal(failure: upstream.UpstreamFailed) -> api_errors.Refusal:
    return api_errors.UPSTREAM_TIMEOUT if failure.timeout else api_errors.UPSTREAM_ERROR


def billed_tokens(usage, admitted, *, counted_output: int) -> dict:
    """The tokens to bill: as the upstream reported them, or where it reported none (or
    something that is not a count) the prompt's estimate as input and our own count of the
    output, marked estimated. The same rule for answers and streams."""
    reported_input, reported_output = reported_tokens(usage)
    return {
        "input_tokens": admitted.estimate.input_tokens
        if reported_input is None
        else reported_input,
        "output_tokens": counted_output if reported_output is None else reported_output,
        "estimated": reported_input is None or reported_output is None,
    }


async def finish(admitted, body, outcome, client_request_id, stream):
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


# --- A JSON answer -------------------------------------------------------------------------


async def answer(admitted, body, client_request_id, headers) -> JsonResponse:
    """Forward a request that is not a stream and answer with the upstream's reply, once the
    settlement committed."""
    started = time.perf_counter()
    try:
        result = await upstream.complete(admitted.route, upstream_body(body, admitted.route))
    except upstream.UpstreamFailed as failure:
        refusal = upstream_refusal(failure)
        outcome = outcome_since(started, status=refusal.status, code=refusal.code)
        await finish(admitted, body, outcome, client_request_id, False)
        return api_errors.error_response(refusal, headers=headers)
    except BaseException:
        await sync_to_async(services.release)(admitted)
        raise
    text, output = answer_output(result)
    counted = text_tokens(len(output))
    outcome = outcome_since(
        started,
        status=200,
        **billed_tokens(result.get("usage"), admitted, counted_output=counted),
        response_text=text,
    )
    await finish(admitted, body, outcome, client_request_id, False)
    result["model"] = body["model"]
    if client_request_id:
        result["request_id"] = client_request_id
    return JsonResponse(result, headers=headers, json_dumps_params={"ensure_ascii": False})


# --- A stream ------------------------------------------------------------------------------


@dataclass
class Delivered:
    """What a stream has passed on to its client so far, to bill it: the usage the upstream
    reported, or else the prompt's estimate as input and a token per output delta."""

    admitted: services.Admitted
    started: float = field(default_factory=time.perf_counter)
    parts: list[str] = field(default_factory=list)
    output_deltas: int = 0
    usage: dict | None = None
    first_token_ms: int | None = None

    def note(self, chunk: dict) -> None:
        """Count the output of a chunk passed on to the client."""
        for text in chunk_output(chunk):
            self.note_output(text)

    def note_output(self, text: str | None) -> None:
        """Count one delta of output passed on to the client (None: output with no text,
        such as a tool call's arguments)."""
        if text is not None:
            self.parts.append(text)
        self.output_deltas += 1
        if self.first_token_ms is None:
            self.first_token_ms = int((time.perf_counter() - self.started) * 1000)

    def outcome(self, *, status: int, code: str = "", **fields) -> services.Outcome:
        """What was delivered, billed as the upstream reported it, or else counted and
        marked estimated."""
        return outcome_since(
            self.started,
            status=status,
            code=code,
            **billed_tokens(self.usage, self.admitted, counted_output=self.output_deltas),
            response_text="".join(self.parts),
            first_token_ms=self.first_token_ms,
            **fields,
        )


async def stream_events(admitted, body, client_request_id):
    """An admitted stream as SSE text: the upstream's chunks as they arrive, then the
    settlement, then `[DONE]`. The API and the console's playground both stream with it.
    One request, one settlement: whichever path settles marks it first, so a settlement
    that fails is never followed by another."""
    delivered = Delivered(admitted)
    passes_usage = wants_usage(body)
    renewed_at = time.monotonic()
    settled = False
    try:
        async for chunk in upstream.stream(admitted.route, upstream_body(body, admitted.route)):
            if chunk.get("usage"):
                delivered.usage = chunk["usage"]
                if not passes_usage:
                    continue  # billed from, never shown to a client that did not ask for it
            delivered.note(chunk)
            chunk["model"] = body["model"]
            yield sse(chunk)
            renewed_at = await renewed_when_due(admitted, renewed_at)
        settled = True
        yield await _closing_event(admitted, body, delivered.outcome(status=200), client_request_id)
    except upstream.UpstreamFailed as failure:
        settled = True
        outcome, event = _failure(delivered, upstream_refusal(failure))
        yield await _closing_event(admitted, body, outcome, client_request_id, event)
    finally:
        if not settled:
            # The client left mid-stream: bill what the upstream reported, or else count the
            # output delivered and mark the record as estimated.
            outcome = delivered.outcome(status=200, code="client_closed")
            await finish(admitted, body, outcome, client_request_id, True)


async def renewed_when_due(admitted, renewed_at: float) -> float:
    """A stream may outlive GATEWAY_RESERVATION_TTL: keep its slot and holds, renewed every
    services.renewal_interval(). Returns when they were last renewed."""
    if time.monotonic() - renewed_at < services.renewal_interval():
        return renewed_at
    renewed_at = time.monotonic()
    await sync_to_async(services.keep_alive)(admitted)
    return renewed_at


def _failure(delivered: Delivered, refusal: api_errors.Refusal) -> tuple[services.Outcome, str]:
    """The outcome and the last event of a stream whose upstream failed."""
    if delivered.output_deltas:
        # Part of the answer reached the client: billed as for a client that left.
        outcome = delivered.outcome(status=refusal.status, code=refusal.code, partial=True)
        return outcome, sse_error(refusal, PARTIAL_MESSAGE)
    return outcome_since(delivered.started, status=refusal.status, code=refusal.code), sse_error(
        refusal
    )


async def _closing_event(admitted, body, outcome, client_request_id, event=SSE_DONE) -> str:
    """Settle a stream, then its last event; the database's error event instead when the
    database refused (the transaction rolled back, so nothing is charged): the client is told
    so instead of seeing the connection cut. The usage record is committed before the final
    [DONE]."""
    try:
        await finish(admitted, body, outcome, client_request_id, True)
    except DatabaseError as error:
        logger.warning("gateway: database unavailable, request %s: %s", admitted.request_id, error)
        return sse_error(api_errors.DATABASE_UNAVAILABLE)
    return event
