"""Reaching a model's upstream: the built-in simulator in-process, or a base URL over one
pooled HTTP client per process, speaking OpenAI's chat completions (`complete`, `stream`) or
Anthropic's Messages API (`messages_complete`, `messages_stream`), as the route says."""

import json
from collections.abc import AsyncIterator

import httpx

from console.secrets_at_rest import decrypt_secret
from gateway import simulator
from gateway.models import UpstreamRoute


class UpstreamFailed(Exception):
    """The upstream did not answer, or answered an error. `status` and `error` (its error
    object, when it sent one) for an HTTP error status."""

    def __init__(self, timeout: bool, detail: str, *, status: int | None = None, error=None):
        super().__init__(detail)
        self.timeout = timeout
        self.status = status
        self.error = error if isinstance(error, dict) else None


def _error_status(response: httpx.Response, content: bytes) -> UpstreamFailed:
    """An upstream's error status, with the error object it sent if it sent one (OpenAI's
    and BigModel's {"error": {...}}, or Anthropic's {"type": "error", "error": {...}})."""
    try:
        body = json.loads(content)
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    return UpstreamFailed(
        False,
        f"upstream answered {response.status_code}",
        status=response.status_code,
        error=error,
    )


_client: httpx.AsyncClient | None = None
# The Messages API version an Anthropic-protocol upstream is asked for.
ANTHROPIC_VERSION = "2023-06-01"


def client() -> httpx.AsyncClient:
    """One pooled client per process (connections are reused across requests)."""
    global _client
    if _client is None:
        _client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50)
        )
    return _client


def _request(route: UpstreamRoute, body: dict) -> tuple[str, dict, dict]:
    payload = {**body, "model": route.upstream_model or body["model"]}
    headers = {"content-type": "application/json"}
    secret = decrypt_secret(route.secret_encrypted)
    if secret:
        headers["authorization"] = f"Bearer {secret}"
    return route.base_url.rstrip("/") + "/chat/completions", payload, headers


def _messages_request(route: UpstreamRoute, body: dict, beta: str) -> tuple[str, dict, dict]:
    """An Anthropic-protocol upstream (BigModel's /api/anthropic): its key in x-api-key, and
    the client's beta features passed on as it named them."""
    headers = {"content-type": "application/json", "anthropic-version": ANTHROPIC_VERSION}
    if beta:
        headers["anthropic-beta"] = beta
    secret = decrypt_secret(route.secret_encrypted)
    if secret:
        headers["x-api-key"] = secret
    return route.base_url.rstrip("/") + "/v1/messages", body, headers


async def complete(route: UpstreamRoute, body: dict) -> dict:
    if route.is_simulator:
        return await simulator.complete(body)
    return await _post(*_request(route, body), timeout=route.timeout_seconds)


async def messages_complete(route: UpstreamRoute, body: dict, *, beta: str = "") -> dict:
    if route.is_simulator:
        return await simulator.messages_complete(body)
    return await _post(*_messages_request(route, body, beta), timeout=route.timeout_seconds)


async def _post(url: str, payload: dict, headers: dict, *, timeout: float) -> dict:
    try:
        response = await client().post(url, json=payload, headers=headers, timeout=timeout)
    except httpx.TimeoutException as error:
        raise UpstreamFailed(True, str(error)) from error
    except httpx.HTTPError as error:
        raise UpstreamFailed(False, str(error)) from error
    if response.status_code >= 400:
        raise _error_status(response, response.content)
    try:
        answer = response.json()
    except ValueError as error:
        raise UpstreamFailed(False, "upstream answered something other than JSON") from error
    if not isinstance(answer, dict):
        raise UpstreamFailed(False, "upstream answered JSON that is not an object")
    return answer


async def stream(route: UpstreamRoute, body: dict) -> AsyncIterator[dict]:
    if route.is_simulator:
        try:
            async for chunk in simulator.stream(body):
                yield chunk
        except simulator.Failed as error:
            raise UpstreamFailed(False, str(error)) from error
        return
    async for chunk in _events(*_request(route, body), timeout=route.timeout_seconds):
        yield chunk


async def messages_stream(
    route: UpstreamRoute, body: dict, *, beta: str = ""
) -> AsyncIterator[dict]:
    """An Anthropic-protocol upstream's stream events as dicts (each names its `type`; the
    SSE event line repeats it, so only the data lines are read)."""
    if route.is_simulator:
        try:
            async for event in simulator.messages_stream(body):
                yield event
        except simulator.Failed as error:
            raise UpstreamFailed(False, str(error)) from error
        return
    request = _messages_request(route, body, beta)
    async for event in _events(*request, timeout=route.timeout_seconds):
        if event.get("type") == "error":
            detail = event.get("error") if isinstance(event.get("error"), dict) else {}
            raise UpstreamFailed(False, f"upstream stream error: {detail.get('type', '')}")
        yield event


async def _events(url: str, payload: dict, headers: dict, *, timeout: float) -> AsyncIterator[dict]:
    """The JSON objects of a server-sent event stream's data lines, until `[DONE]` or the
    end of the stream."""
    try:
        async with client().stream(
            "POST", url, json=payload, headers=headers, timeout=timeout
        ) as response:
            if response.status_code >= 400:
                raise _error_status(response, (await response.aread())[:65536])
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                try:
                    chunk = json.loads(data)
                except ValueError as error:
                    raise UpstreamFailed(False, "upstream sent a chunk that is not JSON") from error
                if isinstance(chunk, dict):  # anything else carries nothing to forward or bill
                    yield chunk
    except httpx.TimeoutException as error:
        raise UpstreamFailed(True, str(error)) from error
    except httpx.HTTPError as error:
        raise UpstreamFailed(False, str(error)) from error
