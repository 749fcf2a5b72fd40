"""A fast OpenAI-compatible upstream for the gateway benchmark: a bare ASGI app (no
framework) that answers `POST /v1/chat/completions` at once, non-stream or as server-sent
events, with the same 50-token answer every time.

Both our gateway and LiteLLM's proxy forward to it over HTTP, and the benchmark also calls it
directly: the difference is what each proxy adds. It has to be far faster than either proxy,
or it would be what is measured (about 5,000 requests per second from one uvicorn process
here).

    .venv/bin/python -m uvicorn bench.upstream:app --port 9100 --no-access-log
"""

import json

WORDS = ("智谱 GLM answers with care 清晰 简洁 the console meters every token " * 5).split()
OUTPUT_TOKENS = 50
STREAM_CHUNKS = 10  # ten deltas of five words: a stream with some cadence, not one blob
PROMPT_TOKENS = 12

_content = " ".join(WORDS[:OUTPUT_TOKENS])
_usage = {
    "prompt_tokens": PROMPT_TOKENS,
    "completion_tokens": OUTPUT_TOKENS,
    "total_tokens": PROMPT_TOKENS + OUTPUT_TOKENS,
}


def _json(value) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _completion(model: str) -> bytes:
    return _json(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1767225600,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": _content},
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage,
        }
    )


def _chunk(model: str, delta: dict, finish=None, usage=None) -> bytes:
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1767225600,
        "model": model,
        "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage:
        body["usage"] = usage
    return b"data: " + _json(body) + b"\n\n"


def _stream(model: str, include_usage: bool) -> list[bytes]:
    size = OUTPUT_TOKENS // STREAM_CHUNKS
    parts = [_chunk(model, {"role": "assistant", "content": ""})]
    for index in range(STREAM_CHUNKS):
        text = " ".join(WORDS[index * size : (index + 1) * size]) + " "
        parts.append(_chunk(model, {"content": text}))
    parts.append(_chunk(model, {}, finish="stop"))
    if include_usage:
        parts.append(_chunk(model, {}, usage=_usage))
    parts.append(b"data: [DONE]\n\n")
    return parts


# Answers are built once per model name: the upstream's own cost stays near zero.
_cache: dict[tuple, object] = {}


async def _read(receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["method"] != "POST" or not scope["path"].endswith("/chat/completions"):
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b'{"error":"not found"}'})
        return
    try:
        request = json.loads(await _read(receive))
        model = str(request["model"])
    except (ValueError, KeyError, TypeError):
        await send({"type": "http.response.start", "status": 400, "headers": []})
        await send({"type": "http.response.body", "body": b'{"error":"bad request"}'})
        return
    if request.get("stream"):
        include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
        parts = _cache.get(("stream", model, include_usage))
        if parts is None:
            parts = _cache[("stream", model, include_usage)] = _stream(model, include_usage)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-cache"),
                ],
            }
        )
        for part in parts:
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    body = _cache.get(("json", model))
    if body is None:
        body = _cache[("json", model)] = _completion(model)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
