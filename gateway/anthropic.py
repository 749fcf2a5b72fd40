"""The Anthropic-compatible Messages API (issue 23), as plain functions of JSON values: the
request checked, translated to the OpenAI-compatible body the gateway admits, logs and sends
to an OpenAI-protocol upstream, and the answers translated back (a `message` object, or the
stream's events); the usage an Anthropic-protocol upstream reports; the error body and
server-sent events. No database, no shared state, no upstream call (gateway/protocol.py is
the OpenAI side).

What does not translate to an OpenAI-protocol upstream is left out rather than refused:
cache_control marks, documents, server tools, top_k and metadata (thinking sent back goes
as GLM's reasoning_content; docs/api.md, "The Anthropic-compatible endpoint"). An
Anthropic-protocol upstream gets the body as the client sent it."""

import json
import logging

from console import api_errors
from gateway.protocol import as_dict, as_list, is_number, reported_tokens

logger = logging.getLogger(__name__)

ROLES = {"user", "assistant"}

# An OpenAI finish_reason as Anthropic's stop_reason (GLM's `sensitive` is its filter).
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
    "sensitive": "refusal",
    "model_context_window_exceeded": "model_context_window_exceeded",
}

# Anthropic's error type for each status the endpoint answers with.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


# --- The request ---------------------------------------------------------------------------


def _is_count(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _block_problem(block, role: str) -> str | None:
    """What is malformed in one content block, or None. Block types this module does not
    know are accepted: clients send newer ones than any spec."""
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        return "each content block must be an object with a type"
    kind = block["type"]
    if kind == "text" and not isinstance(block.get("text"), str):
        return "a text block needs text"
    if kind == "image" and not isinstance(block.get("source"), dict):
        return "an image block needs a source"
    if kind == "tool_use" and not (
        isinstance(block.get("id"), str)
        and isinstance(block.get("name"), str)
        and isinstance(block.get("input", {}), dict)
    ):
        return "a tool_use block needs an id, a name and an input object"
    if kind == "tool_result":
        if role != "user":
            return "tool_result blocks belong in user messages"
        content = block.get("content")
        if not isinstance(block.get("tool_use_id"), str) or not (
            content is None
            or isinstance(content, str)
            or (isinstance(content, list) and all(isinstance(part, dict) for part in content))
        ):
            return "a tool_result block needs a tool_use_id, and content as text or blocks"
    if kind == "thinking" and not isinstance(block.get("thinking"), str):
        return "a thinking block needs thinking"
    return None


def _messages_problem(messages) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "messages: a non-empty list of {role, content} is required"
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if not isinstance(role, str) or role not in ROLES:  # a list or an object: unhashable
            return f"messages.{index}: role must be user or assistant"
        content = message.get("content")
        if isinstance(content, str):
            continue
        if not isinstance(content, list):
            return f"messages.{index}.content: text or a list of content blocks"
        for block in content:
            problem = _block_problem(block, message["role"])
            if problem:
                return f"messages.{index}.content: {problem}"
    return None


def _system_problem(system) -> str | None:
    if system is None or isinstance(system, str):
        return None
    if isinstance(system, list) and all(
        isinstance(block, dict) and isinstance(block.get("text"), str) for block in system
    ):
        return None
    return "system: text or a list of text blocks"


def validate(body) -> str | None:
    """What is malformed in a Messages request (Anthropic's documented shape), or None.
    Fields it does not know are not looked at: coding tools send newer ones than any spec."""
    if not isinstance(body, dict):
        return "The body must be a JSON object."
    model = body.get("model")
    if not isinstance(model, str) or not model.strip() or len(model) > 100:
        return "model: a model name is required."
    if not _is_count(body.get("max_tokens"), 1, 10**6):
        return "max_tokens: an integer from 1 to 1000000 is required."
    problem = _messages_problem(body.get("messages")) or _system_problem(body.get("system"))
    if problem:
        return problem + "."
    for name, low, high in (("temperature", 0, 1), ("top_p", 0, 1)):
        value = body.get(name)
        if value is not None and (not is_number(value) or not low <= value <= high):
            return f"{name}: a number from {low} to {high}."
    if body.get("top_k") is not None and not _is_count(body["top_k"], 0, 10**6):
        return "top_k: a non-negative integer."
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        return "stream: true or false."
    stops = body.get("stop_sequences")
    if stops is not None and not (
        isinstance(stops, list) and all(isinstance(stop, str) and stop for stop in stops)
    ):
        return "stop_sequences: a list of non-empty strings."
    tools = body.get("tools")
    if tools is not None and not (
        isinstance(tools, list) and all(isinstance(tool, dict) for tool in tools)
    ):
        return "tools: a list of tool objects."
    for name in ("tool_choice", "metadata", "thinking"):
        value = body.get(name)
        if value is not None and not isinstance(value, dict):
            return f"{name}: an object."
    choice = body.get("tool_choice")
    if choice is not None and not isinstance(choice.get("type"), str):
        return "tool_choice: an object with a type."
    return None


def count_request_problem(body) -> str | None:
    """count_tokens takes the same request without max_tokens."""
    if isinstance(body, dict) and "max_tokens" not in body:
        body = {**body, "max_tokens": 1}
    return validate(body)


# --- To the OpenAI-compatible body ---------------------------------------------------------


def _text_of(content) -> str:
    """The text of a content that is text or a list of blocks (text blocks only)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "\n\n".join(
        block["text"]
        for block in content
        if isinstance(block, dict)
        and block.get("type") == "text"
        and isinstance(block.get("text"), str)
    )


def _image_part(block: dict) -> dict | None:
    source = block.get("source") or {}
    if source.get("type") == "base64" and isinstance(source.get("data"), str):
        media_type = source.get("media_type") or "image/png"
        url = f"data:{media_type};base64,{source['data']}"
    elif source.get("type") == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        return None
    return {"type": "image_url", "image_url": {"url": url}}


def _user_messages(content) -> list[dict]:
    """One Anthropic user message as OpenAI messages: its tool results first (each a `tool`
    message, answering the assistant's calls just before), then its text and images."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    results, parts = [], []
    for block in content:
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image":
            image = _image_part(block)
            if image:
                parts.append(image)
        elif kind == "tool_result":
            inner = block.get("content")
            text = _text_of(inner)
            if block.get("is_error") is True:
                text = "Error: " + text  # OpenAI's tool message has no error flag
            results.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": text})
            # An OpenAI tool message carries text only: its images follow in the user's.
            for part in inner if isinstance(inner, list) else []:
                if part.get("type") == "image" and (image := _image_part(part)):
                    parts.append(image)
    messages = results
    if parts:
        text_only = all(part["type"] == "text" for part in parts)
        messages.append(
            {
                "role": "user",
                "content": "\n\n".join(part["text"] for part in parts) if text_only else parts,
            }
        )
    return messages


def _assistant_message(content) -> dict:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    calls = [
        {
            "id": block["id"],
            "type": "function",
            "function": {
                "name": block["name"],
                "arguments": json.dumps(block.get("input") or {}, ensure_ascii=False),
            },
        }
        for block in content
        if block.get("type") == "tool_use"
    ]
    message = {"role": "assistant", "content": _text_of(content)}
    reasoning = "".join(block["thinking"] for block in content if block.get("type") == "thinking")
    if reasoning:
        # GLM takes its reasoning back beside tool results (interleaved thinking).
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_choice(choice: dict):
    kind = choice.get("type")
    if kind == "tool" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    return {"auto": "auto", "any": "required", "none": "none"}.get(kind)


def _function(tool: dict) -> dict | None:
    """A custom tool as an OpenAI function; server tools (web search, …) have no translation."""
    if tool.get("type") not in (None, "custom") or not isinstance(tool.get("name"), str):
        return None
    function = {"name": tool["name"], "parameters": tool.get("input_schema") or {"type": "object"}}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def openai_body(body: dict, model: str) -> dict:
    """A valid Messages request (validate) as the OpenAI-compatible body for `model`: what
    admission estimates, the prompt log keeps and an OpenAI-protocol upstream receives."""
    messages = []
    system = _text_of(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for message in body["messages"]:
        if message["role"] == "user":
            messages.extend(_user_messages(message["content"]))
        else:
            messages.append(_assistant_message(message["content"]))
    converted = {"model": model, "messages": messages, "max_tokens": body["max_tokens"]}
    for name in ("temperature", "top_p", "stream"):
        if body.get(name) is not None:
            converted[name] = body[name]
    if body.get("stop_sequences"):
        converted["stop"] = body["stop_sequences"]
    functions = [f for f in map(_function, body.get("tools") or []) if f]
    if functions:
        converted["tools"] = functions
        choice = body.get("tool_choice")
        if choice and (translated := _tool_choice(choice)) is not None:
            converted["tool_choice"] = translated
    # GLM's own switch has the same name and values. Anthropic's models think only when
    # asked; GLM-4.7 does unless told not to, so no `thinking` (or `adaptive`, left to the
    # model) is passed on as the client meant it.
    thinking = body.get("thinking") or {"type": "disabled"}
    if thinking.get("type") in ("enabled", "disabled"):
        converted["thinking"] = {"type": thinking["type"]}
    if "simulator" in body:
        converted["simulator"] = body["simulator"]  # the built-in simulator's knobs
    return converted


def upstream_body(body: dict, route, model: str) -> dict:
    """What an Anthropic-protocol upstream receives: the request as sent, every field kept,
    under the route's model name."""
    forwarded = {
        key: value for key, value in body.items() if key != "simulator" or route.is_simulator
    }
    forwarded["model"] = route.upstream_model or model
    return forwarded


# --- From the OpenAI-compatible answer -----------------------------------------------------


def _arguments(text) -> dict:
    try:
        value = json.loads(text) if isinstance(text, str) and text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _stop_reason(finish_reason) -> str:
    """An upstream's finish_reason as a stop_reason (whatever an odd upstream sends there)."""
    return (
        STOP_REASONS.get(finish_reason, "end_turn")
        if isinstance(finish_reason, str)
        else "end_turn"
    )


def usage_of(openai_usage, *, input_estimate: int = 0, output_estimate: int = 0) -> dict:
    """An OpenAI usage object as Anthropic's (input, output): the counts the upstream
    reported (gateway.protocol.reported_tokens), else the gateway's own, as it bills them."""
    input_tokens, output_tokens = reported_tokens(openai_usage)
    return {
        "input_tokens": input_estimate if input_tokens is None else input_tokens,
        "output_tokens": output_estimate if output_tokens is None else output_tokens,
    }


def message_from_openai(answer: dict, *, message_id: str, model: str, input_estimate: int) -> dict:
    """An OpenAI chat completion as an Anthropic `message`: reasoning as a thinking block,
    the text, then each tool call as a tool_use block."""
    choice = as_dict(as_list(answer.get("choices"))[0] if as_list(answer.get("choices")) else {})
    message = as_dict(choice.get("message"))
    content = []
    if message.get("reasoning_content"):
        content.append(
            {"type": "thinking", "thinking": str(message["reasoning_content"]), "signature": ""}
        )
    if message.get("content"):
        content.append({"type": "text", "text": str(message["content"])})
    for index, call in enumerate(as_list(message.get("tool_calls"))):
        function = as_dict(as_dict(call).get("function"))
        content.append(
            {
                "type": "tool_use",
                "id": str(as_dict(call).get("id") or f"toolu_{message_id}_{index}"),
                "name": str(function.get("name") or ""),
                "input": _arguments(function.get("arguments")),
            }
        )
    stop_reason = _stop_reason(choice.get("finish_reason"))
    if stop_reason == "end_turn" and message.get("tool_calls"):
        stop_reason = "tool_use"
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage_of(answer.get("usage"), input_estimate=input_estimate),
    }


class StreamTranslator:
    """OpenAI stream chunks as Anthropic stream events, in Anthropic's order: message_start,
    then per content block (thinking, text, each tool call) content_block_start, its deltas,
    content_block_stop; then message_delta (stop reason, usage) and message_stop. Feed it
    chunks (`events_of`), then `closing_events`. `usage` is the upstream's OpenAI usage
    object, once it reported one.

    Anthropic's blocks cannot interleave, and OpenAI's tool calls can (parallel calls by
    `index`, fragments of several calls in turn): the first call streams live; a call whose
    fragments arrive while another block is open is gathered and sent whole at the end, one
    block with one input_json_delta, so no fragment is lost or opens a nameless block."""

    def __init__(self, *, message_id: str, model: str, input_estimate: int):
        self.message_id = message_id
        self.model = model
        self.input_estimate = input_estimate
        self.usage: dict | None = None
        self.stop_reason: str | None = None
        self.index = -1  # the open block's index
        self.open_kind: str | None = None  # thinking, text, or tool:<call key>
        self.output_deltas = 0  # deltas carrying output: the count where none is reported
        # Tool calls by key (OpenAI's index, or the id where a call has none): id, name,
        # arguments held back, and whether its block was streamed.
        self.calls: dict = {}
        self.last_call = None

    def opening_event(self) -> dict:
        return {
            "type": "message_start",
            "message": {
                "id": self.message_id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                # The estimate until the upstream reports: message_delta carries its count.
                "usage": {"input_tokens": self.input_estimate, "output_tokens": 0},
            },
        }

    def _open(self, kind: str, block: dict) -> list[dict]:
        events = self._close()
        self.index += 1
        self.open_kind = kind
        events.append({"type": "content_block_start", "index": self.index, "content_block": block})
        return events

    def _close(self) -> list[dict]:
        if self.open_kind is None:
            return []
        events = []
        if self.open_kind == "thinking":
            # Anthropic closes a thinking block with its signature; an OpenAI upstream has
            # none to give (and thinking sent back is passed on as reasoning text).
            delta = {"type": "signature_delta", "signature": ""}
            events.append({"type": "content_block_delta", "index": self.index, "delta": delta})
        self.open_kind = None
        return [*events, {"type": "content_block_stop", "index": self.index}]

    def _delta(self, delta: dict) -> dict:
        self.output_deltas += 1
        return {"type": "content_block_delta", "index": self.index, "delta": delta}

    def _tool_events(self, call: dict) -> list[dict]:
        """One tool-call fragment: streamed into its open block, opening it when nothing
        else is, or else held back for the end."""
        function = as_dict(call.get("function"))
        call_id = call.get("id") if isinstance(call.get("id"), str) and call["id"] else None
        index = call.get("index")
        if isinstance(index, int) and not isinstance(index, bool):
            key = index
        elif call_id is not None and call_id not in self.calls:
            key = call_id  # no index: a new id is a new call
        else:
            key = call_id or self.last_call
        self.last_call = key
        known = self.calls.setdefault(key, {"id": None, "name": "", "held": [], "streamed": False})
        known["id"] = known["id"] or call_id
        if not known["name"] and isinstance(function.get("name"), str):
            known["name"] = function["name"]
        arguments = function.get("arguments")
        arguments = arguments if isinstance(arguments, str) else ""
        self.output_deltas += bool(arguments)
        kind = f"tool:{key}"
        if self.open_kind == kind:
            if not arguments:
                return []
            delta = {"type": "input_json_delta", "partial_json": arguments}
            return [{"type": "content_block_delta", "index": self.index, "delta": delta}]
        if known["streamed"] or (self.open_kind or "").startswith("tool:"):
            known["held"].append(arguments)  # sent whole at the end
            return []
        known["streamed"] = True
        events = self._open(kind, self._tool_block(key, known))
        held = "".join([*known["held"], arguments])
        known["held"] = []
        if held:
            events.append(
                {
                    "type": "content_block_delta",
                    "index": self.index,
                    "delta": {"type": "input_json_delta", "partial_json": held},
                }
            )
        return events

    def _tool_block(self, key, known: dict) -> dict:
        call_id = known["id"] or f"toolu_{self.message_id}_{key}"
        return {"type": "tool_use", "id": call_id, "name": known["name"], "input": {}}

    def events_of(self, chunk: dict) -> list[dict]:
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        events = []
        for choice in as_list(chunk.get("choices")):
            delta = as_dict(as_dict(choice).get("delta"))
            if delta.get("reasoning_content"):
                if self.open_kind != "thinking":
                    events += self._open(
                        "thinking", {"type": "thinking", "thinking": "", "signature": ""}
                    )
                events.append(
                    self._delta(
                        {"type": "thinking_delta", "thinking": str(delta["reasoning_content"])}
                    )
                )
            if delta.get("content"):
                if self.open_kind != "text":
                    events += self._open("text", {"type": "text", "text": ""})
                events.append(self._delta({"type": "text_delta", "text": str(delta["content"])}))
            for call in as_list(delta.get("tool_calls")):
                events += self._tool_events(as_dict(call))
            if choice.get("finish_reason"):
                self.stop_reason = _stop_reason(choice["finish_reason"])
        return events

    def closing_events(self) -> list[dict]:
        """The open block's stop, the calls held back (each whole), message_delta and
        message_stop. Where the upstream reported no usage, the counts are the gateway's
        (as gateway.relay bills them: the input estimate, a token per output delta)."""
        events = self._close()
        for key, known in self.calls.items():
            held = "".join(known["held"])
            if known["streamed"] and not held:
                continue
            if known["streamed"]:
                # Fragments of a call whose block text or thinking had closed before they
                # came: a block cannot reopen. No upstream seen does this; say so if one does.
                logger.warning("anthropic: tool call %s continued after its block closed", key)
                continue
            self.index += 1
            events.append(
                {
                    "type": "content_block_start",
                    "index": self.index,
                    "content_block": self._tool_block(key, known),
                }
            )
            if held:
                delta = {"type": "input_json_delta", "partial_json": held}
                events.append({"type": "content_block_delta", "index": self.index, "delta": delta})
            events.append({"type": "content_block_stop", "index": self.index})
        stop_reason = self.stop_reason or "end_turn"
        if stop_reason == "end_turn" and self.calls:
            stop_reason = "tool_use"
        usage = usage_of(
            self.usage, input_estimate=self.input_estimate, output_estimate=self.output_deltas
        )
        return [
            *events,
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": usage,
            },
            {"type": "message_stop"},
        ]


# --- What an answer says (either protocol's upstream, once in Anthropic's shape) -----------


def reported_usage(message_usage, delta_usage=None) -> dict:
    """The usage an Anthropic-protocol upstream reported, as the OpenAI usage object the
    gateway bills from: every input token (cache writes and reads included: the console
    prices no cache) and the output tokens. Counts it did not report stay out, so they are
    counted instead (gateway.relay)."""
    merged = {
        **as_dict(message_usage),
        **{k: v for k, v in as_dict(delta_usage).items() if v is not None},
    }
    usage = {}
    parts = [
        merged.get(name)
        for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    ]
    if isinstance(merged.get("input_tokens"), int):
        usage["prompt_tokens"] = sum(part for part in parts if isinstance(part, int))
    if isinstance(merged.get("output_tokens"), int):
        usage["completion_tokens"] = merged["output_tokens"]
    return usage


def message_text(message: dict) -> tuple[str, str]:
    """A message's text (what the prompt log keeps), and its output to count where the
    upstream reported none: the text, thinking and tool inputs."""
    text, output = [], []
    for block in as_list(message.get("content")):
        block = as_dict(block)
        if block.get("type") == "text":
            text.append(str(block.get("text") or ""))
        elif block.get("type") == "thinking":
            output.append(str(block.get("thinking") or ""))
        elif block.get("type") == "tool_use":
            output.append(json.dumps(block.get("input") or {}, ensure_ascii=False))
    joined = "".join(text)
    return joined, joined + "".join(output)


def delta_text(event: dict) -> tuple[str | None, bool]:
    """A stream event's text delta (None if it has none), and whether it carries output."""
    if event.get("type") != "content_block_delta":
        return None, False
    delta = as_dict(event.get("delta"))
    if delta.get("type") == "text_delta":
        return str(delta.get("text") or ""), True
    return None, delta.get("type") in ("input_json_delta", "thinking_delta")


# --- Errors and events ---------------------------------------------------------------------


def refusal_for(refusal: api_errors.Refusal) -> api_errors.Refusal:
    """A refusal as this endpoint answers it: an unknown model is Anthropic's 404, a
    dependency down is its 529 overloaded, an upstream failure its 500 api_error."""
    if refusal.code == api_errors.UNKNOWN_MODEL.code and refusal.status == 400:
        return api_errors.Refusal(404, refusal.code, refusal.message)
    status = {503: 529, 502: 500}.get(refusal.status, refusal.status)
    return api_errors.Refusal(status, refusal.code, refusal.message)


def error_body(refusal: api_errors.Refusal, message: str | None = None, *, request_id=None) -> dict:
    """Anthropic's error shape; BigModel's code leads the message (and has its own field)."""
    body = {
        "type": "error",
        "error": {
            "type": ERROR_TYPES.get(refusal.status, "api_error"),
            "message": f"{refusal.code}: {message or refusal.message}",
            "code": refusal.code,
        },
    }
    if request_id:
        body["request_id"] = request_id
    return body


def sse_event(event: dict) -> str:
    """One server-sent event, named by its type as Anthropic's are."""
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event.get('type', 'message')}\ndata: {data}\n\n"


PING = sse_event({"type": "ping"})
