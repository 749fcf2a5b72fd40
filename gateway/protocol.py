"""The OpenAI-compatible protocol, as the API and the console's playground both speak it:
the request body read and checked, the body forwarded upstream, what an answer or a stream
chunk says (its text, its tool calls, the tokens the upstream reported), and server-sent
events. Plain functions of JSON values: no database, no shared state, no upstream call."""

import json
import math
import re

from console import api_errors

ROLES = {"system", "user", "assistant", "tool"}

# NUL, and the surrogates that only a JSON escape (\ud800) can put in a Python string.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Control characters: a client's request_id comes back in a header.
_CONTROL = re.compile("[\x00-\x1f\x7f]")

# The last event of a stream that ended well.
SSE_DONE = "data: [DONE]\n\n"


class InvalidBody(ValueError):
    """A body refused before it is read: not JSON (NaN and Infinity are not JSON either),
    nested deeper than the parser goes, or holding what PostgreSQL cannot store (NUL
    characters, unpaired surrogates, numbers too large to be finite): an answer of 400, not a
    500 when the usage record or the prompt log is written."""


# --- The request ---------------------------------------------------------------------------


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


def is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


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


def validate(body) -> tuple[api_errors.Refusal, str] | None:
    """Refuse only what the real API refuses; null-valued optional parameters are fine."""
    if not isinstance(body, dict):
        return api_errors.INVALID_PARAMETERS, "The body must be a JSON object."
    model = body.get("model")
    if not isinstance(model, str) or not model or len(model) > 64:
        return api_errors.INVALID_PARAMETERS, "model is required."
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
        return api_errors.INVALID_MESSAGES, api_errors.INVALID_MESSAGES.message
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (
        not isinstance(max_tokens, int)
        or isinstance(max_tokens, bool)
        or not 1 <= max_tokens <= 10**6
    ):
        return api_errors.INVALID_PARAMETERS, "max_tokens must be an integer from 1 to 1000000."
    choices = body.get("n")
    if choices is not None and (
        not isinstance(choices, int) or isinstance(choices, bool) or choices != 1
    ):
        # BigModel answers one choice per request; more would multiply the bill past the
        # estimate that admission reserved.
        return api_errors.INVALID_PARAMETERS, "n must be 1: one choice per request is supported."
    for name, low, high in (("temperature", 0, 2), ("top_p", 0, 1)):
        value = body.get(name)
        if value is not None and (not is_number(value) or not low <= value <= high):
            return api_errors.INVALID_PARAMETERS, f"{name} must be a number from {low} to {high}."
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        return api_errors.INVALID_PARAMETERS, "stream must be true or false."
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        return api_errors.INVALID_PARAMETERS, "stream_options must be an object."
    request_id = body.get("request_id")
    if request_id is not None and (not isinstance(request_id, str) or len(request_id) > 128):
        return (
            api_errors.INVALID_PARAMETERS,
            "request_id must be a string of at most 128 characters.",
        )
    if request_id is not None and _CONTROL.search(request_id):
        return api_errors.INVALID_PARAMETERS, "request_id must not contain control characters."
    return None


def wants_usage(body: dict) -> bool:
    """Whether a stream's client asked for the usage chunk."""
    return bool((body.get("stream_options") or {}).get("include_usage"))


def upstream_body(body: dict, route) -> dict:
    """The body sent on to the route's upstream."""
    forwarded = {k: v for k, v in body.items() if v is not None and k != "request_id"}
    if not route.is_simulator:
        forwarded.pop("simulator", None)
    if body.get("stream"):
        # Always ask for usage: the bill comes from it. The client sees the usage chunk only
        # if it asked for it.
        forwarded["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return forwarded


# --- The answer ----------------------------------------------------------------------------


def response_headers(request_id: str, extra: dict | None = None) -> dict:
    return {"x-request-id": request_id, **(extra or {})}


def as_dict(value) -> dict:
    """`value` if it is an object, else an empty one (an odd upstream's answer, read safely)."""
    return value if isinstance(value, dict) else {}


def reported_tokens(usage) -> tuple[int | None, int | None]:
    """The input and output tokens the upstream reported in `usage`; None for a count it did
    not report, or reported as something that is not a count."""
    usage = as_dict(usage)
    return _token_count(usage.get("prompt_tokens")), _token_count(usage.get("completion_tokens"))


def _token_count(value) -> int | None:
    """A token count the upstream reported, or None where it reported none or something
    that is not a count (a string, a negative or fractional number): then it is counted."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if value < 0 or value != int(value):
        return None
    return int(value)


def answer_output(result: dict) -> tuple[str, str]:
    """An answer's text, and its output to count where the upstream reported none: the text
    and any tool calls."""
    choices = result.get("choices")
    message = as_dict(
        as_dict(choices[0] if isinstance(choices, list) and choices else {}).get("message")
    )
    text = str(message.get("content") or "")
    calls = message.get("tool_calls")
    return text, text + (json.dumps(calls, ensure_ascii=False) if calls else "")


def chunk_output(chunk: dict) -> list[str | None]:
    """A stream chunk's deltas that carry output, each as its text (None for a delta with
    only a tool call: its arguments are output as much as text is)."""
    choices = chunk.get("choices")
    deltas = [as_dict(as_dict(choice).get("delta")) for choice in as_list(choices)]
    return [
        str(delta["content"]) if delta.get("content") else None
        for delta in deltas
        if delta.get("content") or delta.get("tool_calls")
    ]


def as_list(value) -> list:
    return value if isinstance(value, list) else []


def model_list(names) -> dict:
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "zhipuai"} for name in names
        ],
    }


# --- Server-sent events --------------------------------------------------------------------


def sse(data) -> str:
    return "data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n\n"


def sse_error(refusal: api_errors.Refusal, message: str | None = None) -> str:
    """A stream's last event when it cannot end with [DONE]: the API's error body."""
    return sse(api_errors.error_body(refusal, message))
