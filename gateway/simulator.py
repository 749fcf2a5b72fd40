"""The built-in **simulator** upstream: OpenAI-shaped chat completions with deterministic
text, realistic usage counts, and configurable latency and chunk cadence. The demo and the
benchmarks route models to it; it is also served over HTTP at /simulator/v1/ so a route can
reach it through the real HTTP upstream path.

Latency and cadence come from settings (SIMULATOR_FIRST_TOKEN_MS, SIMULATOR_CHUNK_MS) or,
per request, from a `simulator` object in the body: {"first_token_ms": 50, "chunk_ms": 5,
"output_tokens": 200}. Faults a real upstream shows now and then, on demand:
"fail_after_tokens": 5 (a stream breaks off after that many tokens) and "omit_usage": true
(the answer carries no `usage`).

Tool use, so the suite and the demo exercise it: when the request offers tools and its last
user turn names one of them (and is not already answering a tool call), the simulator calls
that tool, with arguments filled from its schema; once the tool's result comes back it
answers in text. Stop sequences cut the text where one appears. It speaks both protocols:
OpenAI's chat completions (`complete`, `stream`) and Anthropic's Messages API
(`messages_complete`, `messages_stream`, built natively rather than through the gateway's
translation, so the translation is checked against an independent answer).
"""

import asyncio
import hashlib
import json
import math
import time
from collections.abc import AsyncIterator

from django.conf import settings

from billing.selectors import prompt_tokens_of, text_tokens
from gateway import anthropic

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


def _example(schema) -> object:
    """A value that fits a JSON schema's type, for a simulated tool call's arguments."""
    schema = schema if isinstance(schema, dict) else {}
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object" or isinstance(schema.get("properties"), dict):
        properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        required = schema.get("required") if isinstance(schema.get("required"), list) else None
        names = [name for name in properties if required is None or name in required]
        return {name: _example(properties[name]) for name in names}
    return {"integer": 1, "number": 1, "boolean": True, "array": [], "null": None}.get(kind, "glm")


def _tool_call(messages: list, tools) -> tuple[str, dict] | None:
    """The tool to call and its arguments, if the request offers tools and the user's last
    turn names one; None once a tool's result is back (the turn ends in text)."""
    functions = [
        tool["function"]
        for tool in tools or []
        if isinstance(tool, dict)
        and isinstance(tool.get("function"), dict)
        and isinstance(tool["function"].get("name"), str)
    ]
    if not functions:
        return None
    since_assistant = []
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") == "assistant":
            break
        since_assistant.append(message)
    if any(message.get("role") == "tool" for message in since_assistant):
        return None
    asked = " ".join(
        message["content"]
        if isinstance(message.get("content"), str)
        else json.dumps(message.get("content"), ensure_ascii=False)
        for message in since_assistant
        if message.get("role") == "user"
    ).lower()
    for function in functions:
        if function["name"].lower() in asked:
            return function["name"], _example(function.get("parameters"))
    return None


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
        self.finish_reason = "length" if wanted > self.completion_tokens else "stop"
        # Whole milliseconds (timings, not money).
        self.first_token_ms = _knob(
            knobs, "first_token_ms", MAX_DELAY_MS, default=settings.SIMULATOR_FIRST_TOKEN_MS
        )
        self.chunk_ms = _knob(knobs, "chunk_ms", MAX_DELAY_MS, default=settings.SIMULATOR_CHUNK_MS)
        self.fail_after_tokens = _knob(knobs, "fail_after_tokens", MAX_OUTPUT_TOKENS, default=-1)
        self.omit_usage = knobs.get("omit_usage") is True
        seed = json.dumps(self.messages, ensure_ascii=False, sort_keys=True) + self.model
        self.tokens = _words(seed, self.completion_tokens)
        self.stop_sequence = None
        stops = body.get("stop")
        for stop in [stops] if isinstance(stops, str) else stops if isinstance(stops, list) else []:
            if not isinstance(stop, str) or not stop:
                continue
            # Each cut shortens the text, so the earliest stop sequence is the one kept.
            cut = next((i for i, token in enumerate(self.tokens) if stop in token), None)
            if cut is not None:
                self.tokens, self.stop_sequence = self.tokens[:cut], stop
                self.finish_reason = "stop"
        self.call = _tool_call(self.messages, body.get("tools"))
        if self.call is not None:
            self.arguments = json.dumps(self.call[1], ensure_ascii=False)
            self.tokens, self.finish_reason = [], "tool_calls"
            self.completion_tokens = max(1, text_tokens(len(self.call[0] + self.arguments)))
        elif self.stop_sequence is not None:
            self.completion_tokens = max(1, len(self.tokens))
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
    message = {"role": "assistant", "content": plan.text}
    if plan.call is not None:
        message = {"role": "assistant", "content": None, "tool_calls": [_openai_call(plan)]}
    answer = {
        "id": plan.id,
        "object": "chat.completion",
        "created": plan.created,
        "model": plan.model,
        "choices": [{"index": 0, "message": message, "finish_reason": plan.finish_reason}],
        "usage": plan.usage(),
    }
    if plan.omit_usage:
        del answer["usage"]
    return answer


def _openai_call(plan: Plan, arguments: str | None = None) -> dict:
    return {
        "id": "call_" + plan.id[-24:],
        "type": "function",
        "function": {
            "name": plan.call[0],
            "arguments": plan.arguments if arguments is None else arguments,
        },
    }


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
    if plan.call is not None:
        # The call's name first, then its arguments in two pieces, as real upstreams send.
        half = len(plan.arguments) // 2
        yield _chunk(plan, {"tool_calls": [{"index": 0, **_openai_call(plan, "")}]})
        for piece in (plan.arguments[:half], plan.arguments[half:]):
            yield _chunk(plan, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
    for index, token in enumerate(plan.tokens):
        if index == plan.fail_after_tokens:
            raise Failed(f"the stream broke off after {index} tokens (simulated)")
        if plan.chunk_ms:
            await asyncio.sleep(plan.chunk_ms / 1000)
        yield _chunk(plan, {"content": token if index == 0 else " " + token})
    yield _chunk(plan, {}, finish_reason=plan.finish_reason)
    if options.get("include_usage") and not plan.omit_usage:
        yield _chunk(plan, {}, usage=plan.usage())


# --- Anthropic's Messages API ----------------------------------------------------------------


def _anthropic_plan(body: dict) -> Plan:
    """The answer to a Messages request: the same plan as for its OpenAI form (so the same
    prompt count admission estimates), answered in Anthropic's shapes."""
    plan = Plan(anthropic.openai_body(body, str(body.get("model", ""))))  # knobs included
    plan.id = "msg_sim_" + plan.id[-24:]
    return plan


def _stop(plan: Plan) -> tuple[str, str | None]:
    if plan.stop_sequence is not None and plan.call is None:
        return "stop_sequence", plan.stop_sequence
    return anthropic.STOP_REASONS[plan.finish_reason], None


def _tool_use(plan: Plan) -> dict:
    return {
        "type": "tool_use",
        "id": "toolu_" + plan.id[-24:],
        "name": plan.call[0],
        "input": plan.call[1],
    }


def _message_usage(plan: Plan, output_tokens: int) -> dict:
    usage = {"input_tokens": plan.prompt_tokens, "output_tokens": output_tokens}
    return {} if plan.omit_usage else usage


async def messages_complete(body: dict) -> dict:
    plan = _anthropic_plan(body)
    await asyncio.sleep((plan.first_token_ms + plan.chunk_ms * plan.completion_tokens) / 1000)
    stop_reason, stop_sequence = _stop(plan)
    content = [_tool_use(plan)] if plan.call is not None else [{"type": "text", "text": plan.text}]
    answer = {
        "id": plan.id,
        "type": "message",
        "role": "assistant",
        "model": plan.model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": _message_usage(plan, plan.completion_tokens),
    }
    if plan.omit_usage:
        del answer["usage"]
    return answer


async def messages_stream(body: dict) -> AsyncIterator[dict]:
    """Anthropic's stream events as dicts (the caller encodes them), in its order, with a
    ping after message_start as Anthropic sends one."""
    plan = _anthropic_plan(body)
    start = {
        "id": plan.id,
        "type": "message",
        "role": "assistant",
        "model": plan.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _message_usage(plan, 1),
    }
    yield {"type": "message_start", "message": start}
    yield {"type": "ping"}
    await asyncio.sleep(plan.first_token_ms / 1000)
    if plan.call is not None:
        block = {**_tool_use(plan), "input": {}}
        yield {"type": "content_block_start", "index": 0, "content_block": block}
        half = len(plan.arguments) // 2
        for piece in (plan.arguments[:half], plan.arguments[half:]):
            delta = {"type": "input_json_delta", "partial_json": piece}
            yield {"type": "content_block_delta", "index": 0, "delta": delta}
    else:
        yield {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        }
        for index, token in enumerate(plan.tokens):
            if index == plan.fail_after_tokens:
                raise Failed(f"the stream broke off after {index} tokens (simulated)")
            if plan.chunk_ms:
                await asyncio.sleep(plan.chunk_ms / 1000)
            delta = {"type": "text_delta", "text": token if index == 0 else " " + token}
            yield {"type": "content_block_delta", "index": 0, "delta": delta}
    yield {"type": "content_block_stop", "index": 0}
    stop_reason, stop_sequence = _stop(plan)
    yield {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
        "usage": {} if plan.omit_usage else {"output_tokens": plan.completion_tokens},
    }
    yield {"type": "message_stop"}
