"""The built-in **simulator** upstream: OpenAI-shaped chat completions with deterministic
text, realistic usage counts, and configurable latency and chunk cadence. The demo and the
benchmarks route models to it; it is also served over HTTP at /simulator/v1/ so a route can
reach it through the real HTTP upstream path.

Latency and cadence come from settings (SIMULATOR_FIRST_TOKEN_MS, SIMULATOR_CHUNK_MS) or,
per request, from a `simulator` object in the body: {"first_token_ms": 50, "chunk_ms": 5,
"output_tokens": 200}. Faults a real upstream shows now and then, on demand:
"fail_after_tokens": 5 (a stream breaks off after that many tokens) and "omit_usage": true
(the answer carries no `usage`).
"""

import asyncio
import hashlib
import json
import math
import time
from collections.abc import AsyncIterator

from django.conf import settings

from billing.selectors import prompt_tokens_of

WORDS = (
    "智谱 GLM model answers your question with care 清晰 简洁 the console meters every "
    "token 准确 reliable fast 开放平台 developers build agents 工具 chat completion streaming"
).split(" ")


def _words(seed: str, count: int) -> list[str]:
    digest = hashlib.sha256(seed.encode()).digest()
    return [WORDS[(digest[index % len(digest)] + index) % len(WORDS)] for index in range(count)]


# Knobs are the client's to set: bounded, so one request cannot make the server build a
# billion words or sleep for a day.
MAX_OUTPUT_TOKENS = 100_000
MAX_DELAY_MS = 60_000


def _knob(knobs: dict, name: str, most: int, *, default: int = 0) -> int:
    """A whole number of the body's `simulator` object, from 0 to `most`; the default when it
    is missing or not a number (a knob is never a reason to fail)."""
    value = knobs.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return default
    return max(0, min(int(value), most))


class Failed(Exception):
    """The stream broke off (the `fail_after_tokens` fault)."""


class Plan:
    """What the simulator will answer for one request (deterministic in its input)."""

    def __init__(self, body: dict):
        knobs = body.get("simulator") if isinstance(body.get("simulator"), dict) else {}
        self.model = str(body.get("model", ""))
        self.messages = body.get("messages") or []
        # Counted as the admission estimate counts (every field the model reads), as a real
        # upstream bills tools, tool calls and images too.
        self.prompt_tokens = max(1, prompt_tokens_of(body))
        max_tokens = body.get("max_tokens") or 10**9
        wanted = (
            _knob(knobs, "output_tokens", MAX_OUTPUT_TOKENS) or settings.SIMULATOR_OUTPUT_TOKENS
        )
        self.completion_tokens = max(1, min(wanted, int(max_tokens)))
        # Whole milliseconds (timings, not money).
        self.first_token_ms = _knob(
            knobs, "first_token_ms", MAX_DELAY_MS, default=settings.SIMULATOR_FIRST_TOKEN_MS
        )
        self.chunk_ms = _knob(knobs, "chunk_ms", MAX_DELAY_MS, default=settings.SIMULATOR_CHUNK_MS)
        self.fail_after_tokens = _knob(knobs, "fail_after_tokens", MAX_OUTPUT_TOKENS, default=-1)
        self.omit_usage = knobs.get("omit_usage") is True
        seed = json.dumps(self.messages, ensure_ascii=False, sort_keys=True) + self.model
        self.tokens = _words(seed, self.completion_tokens)
        self.id = "chatcmpl-sim-" + hashlib.sha256(seed.encode()).hexdigest()[:24]
        self.created = int(time.time())

    @property
    def text(self) -> str:
        return " ".join(self.tokens)

    def usage(self) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


async def complete(body: dict) -> dict:
    plan = Plan(body)
    await asyncio.sleep((plan.first_token_ms + plan.chunk_ms * plan.completion_tokens) / 1000)
    answer = {
        "id": plan.id,
        "object": "chat.completion",
        "created": plan.created,
        "model": plan.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": plan.text},
                "finish_reason": "stop" if plan.completion_tokens < 10**9 else "length",
            }
        ],
        "usage": plan.usage(),
    }
    if plan.omit_usage:
        del answer["usage"]
    return answer


def _chunk(plan: Plan, delta: dict, finish_reason=None, usage=None) -> dict:
    chunk = {
        "id": plan.id,
        "object": "chat.completion.chunk",
        "created": plan.created,
        "model": plan.model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    if usage is not None:
        chunk["choices"] = []
        chunk["usage"] = usage
    return chunk


async def stream(body: dict) -> AsyncIterator[dict]:
    """Chunks as dicts (the caller encodes SSE); a final usage chunk when asked for."""
    plan = Plan(body)
    options = body.get("stream_options") if isinstance(body.get("stream_options"), dict) else {}
    await asyncio.sleep(plan.first_token_ms / 1000)
    yield _chunk(plan, {"role": "assistant", "content": ""})
    for index, token in enumerate(plan.tokens):
        if index == plan.fail_after_tokens:
            raise Failed(f"the stream broke off after {index} tokens (simulated)")
        if plan.chunk_ms:
            await asyncio.sleep(plan.chunk_ms / 1000)
        yield _chunk(plan, {"content": token if index == 0 else " " + token})
    yield _chunk(plan, {}, finish_reason="stop")
    if options.get("include_usage") and not plan.omit_usage:
        yield _chunk(plan, {}, usage=plan.usage())
