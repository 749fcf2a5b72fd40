"""Reaching a model's upstream: the built-in simulator in-process, or an OpenAI-compatible
base URL over one pooled HTTP client per process."""

import json
from collections.abc import AsyncIterator

import httpx

from console.secrets_at_rest import decrypt_secret
from gateway import simulator
from gateway.models import UpstreamRoute


class UpstreamFailed(Exception):
    def __init__(self, timeout: bool, detail: str):
        super().__init__(detail)
        self.timeout = timeout


_client: httpx.AsyncClient | None = None


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


async def complete(route: UpstreamRoute, body: dict) -> dict:
    if route.is_simulator:
        return await simulator.complete(body)
    url, payload, headers = _request(route, body)
    try:
        response = await client().post(
            url, json=payload, headers=headers, timeout=route.timeout_seconds
        )
    except httpx.TimeoutException as error:
        raise UpstreamFailed(True, str(error)) from error
    except httpx.HTTPError as error:
        raise UpstreamFailed(False, str(error)) from error
    if response.status_code >= 400:
        raise UpstreamFailed(False, f"upstream answered {response.status_code}")
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
    url, payload, headers = _request(route, body)
    try:
        async with client().stream(
            "POST", url, json=payload, headers=headers, timeout=route.timeout_seconds
        ) as response:
            if response.status_code >= 400:
                raise UpstreamFailed(False, f"upstream answered {response.status_code}")
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
