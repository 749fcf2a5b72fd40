"""The Anthropic ↔ OpenAI translation (gateway/anthropic.py) on recorded examples, both ways:
a Messages request as the OpenAI-compatible body an OpenAI-protocol upstream receives, and
that upstream's answer and stream (GLM's, with reasoning and tool calls) as Anthropic's
message and events, checked against the official anthropic package's types and its own
stream accumulator. Plain functions: no database."""

import json
from pathlib import Path

import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from console import api_errors
from gateway import anthropic

EXAMPLES = json.loads(
    (Path(__file__).parent / "fixtures" / "anthropic_translation.json").read_text()
)
CLAUDE_CODE = json.loads(
    (Path(__file__).parent / "fixtures" / "claude_code_request.json").read_text()
)
EVENT = TypeAdapter(RawMessageStreamEvent)


def test_a_request_translates_to_the_recorded_openai_body():
    example = EXAMPLES["request"]
    assert anthropic.validate(example["anthropic"]) is None
    assert anthropic.openai_body(example["anthropic"], "glm-4.7") == example["openai"]


def test_an_answer_translates_to_the_recorded_message_and_the_sdk_reads_it():
    example = EXAMPLES["answer"]
    message = anthropic.message_from_openai(
        example["openai"], message_id="msg_1", model="claude-sonnet-4-5", input_estimate=0
    )
    assert message == example["anthropic"]
    parsed = Message.model_validate(message)
    assert [block.type for block in parsed.content] == ["thinking", "text", "tool_use"]


def test_a_stream_translates_to_the_recorded_events_in_anthropics_order():
    example = EXAMPLES["stream"]
    translator = anthropic.StreamTranslator(
        message_id="msg_1", model="claude-sonnet-4-5", input_estimate=30
    )
    events = [translator.opening_event()]
    for chunk in example["openai"]:
        events += translator.events_of(chunk)
    events += translator.closing_events()
    assert events == example["anthropic"]
    # Every event is one the SDK knows, and its accumulator builds the same message as the
    # answer's translation (what messages.stream's get_final_message returns).
    snapshot, buffers = None, {}
    for event in events:
        snapshot = accumulate_event(
            event=EVENT.validate_python(event), current_snapshot=snapshot, json_bufs=buffers
        )
    assert snapshot.content[0].thinking == "先想一想"
    assert snapshot.content[1].text == "Let me check."
    assert (snapshot.content[2].name, snapshot.content[2].input) == (
        "get_weather",
        {"city": "北京"},
    )
    assert snapshot.stop_reason == "tool_use"
    assert (snapshot.usage.input_tokens, snapshot.usage.output_tokens) == (31, 12)


def test_a_stream_without_usage_closes_with_the_estimates():
    translator = anthropic.StreamTranslator(message_id="m", model="glm-4.7", input_estimate=9)
    for text in ("a", "b", "c"):
        translator.events_of({"choices": [{"delta": {"content": text}}]})
    translator.events_of({"choices": [{"delta": {"content": "d"}, "finish_reason": "length"}]})
    closing = translator.closing_events()
    assert closing[1]["usage"] == {"input_tokens": 9, "output_tokens": 4}
    assert closing[1]["delta"]["stop_reason"] == "max_tokens"


def test_an_anthropic_upstreams_usage_is_billed_with_its_cache_tokens():
    started = {"input_tokens": 10, "cache_read_input_tokens": 100, "output_tokens": 1}
    assert anthropic.reported_usage(started, {"output_tokens": 42}) == {
        "prompt_tokens": 110,
        "completion_tokens": 42,
    }
    assert anthropic.reported_usage(None) == {}  # nothing reported: counted instead


def test_the_claude_code_request_is_accepted_and_translates():
    body = CLAUDE_CODE["body"]
    assert anthropic.validate(body) is None
    converted = anthropic.openai_body(body, "glm-4.7")
    assert converted["messages"][0]["role"] == "system"
    assert {"context_management", "metadata", "cache_control"}.isdisjoint(json.dumps(converted))
    assert [tool["function"]["name"] for tool in converted["tools"]] == [
        tool["name"] for tool in body["tools"]
    ]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([], "JSON object"),
        ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        (
            {"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]},
            "max_tokens",
        ),
        (
            {"model": "m", "max_tokens": True, "messages": [{"role": "user", "content": "x"}]},
            "max_tokens",
        ),
        ({"model": "m", "max_tokens": 5, "messages": []}, "messages"),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, "role"),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": 5}]}, "content"),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"text": "x"}]}],
            },
            "type",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [
                    {"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "t"}]}
                ],
            },
            "tool_result",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "tool_use", "id": "t"}]}],
            },
            "tool_use",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "system": 3,
                "messages": [{"role": "user", "content": "x"}],
            },
            "system",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "temperature": 1.5,
                "messages": [{"role": "user", "content": "x"}],
            },
            "temperature",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "stream": "yes",
                "messages": [{"role": "user", "content": "x"}],
            },
            "stream",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "stop_sequences": [""],
                "messages": [{"role": "user", "content": "x"}],
            },
            "stop_sequences",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "tools": {},
                "messages": [{"role": "user", "content": "x"}],
            },
            "tools",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "tool_choice": {},
                "messages": [{"role": "user", "content": "x"}],
            },
            "tool_choice",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "thinking": True,
                "messages": [{"role": "user", "content": "x"}],
            },
            "thinking",
        ),
    ],
)
def test_a_malformed_request_is_refused_with_the_reason(body, problem):
    assert problem in anthropic.validate(body)


def test_fields_no_spec_knows_yet_are_accepted():
    body = {
        "model": "claude-opus-4-5",
        "max_tokens": 5,
        "messages": [
            {
                "role": "user",
                "content": [{"type": "future_block", "data": 1}, {"type": "text", "text": "x"}],
            }
        ],
        "output_config": {"effort": "high"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015"}]},
        "thinking": {"type": "adaptive"},
        "service_tier": "auto",
    }
    assert anthropic.validate(body) is None
    assert anthropic.openai_body(body, "glm-4.7")["messages"] == [{"role": "user", "content": "x"}]


def test_refusals_take_anthropics_error_types_and_keep_bigmodels_codes():
    unknown = anthropic.refusal_for(api_errors.UNKNOWN_MODEL)
    assert unknown.status == 404
    assert anthropic.error_body(unknown, request_id="r")["error"]["type"] == "not_found_error"
    overloaded = anthropic.refusal_for(api_errors.STATE_UNAVAILABLE)
    assert (overloaded.status, overloaded.code) == (529, "1240")
    body = anthropic.error_body(api_errors.PLAN_FIVE_HOURS, "Usage limit reached for 5 hour.")
    assert body == {
        "type": "error",
        "error": {
            "type": "rate_limit_error",
            "message": "1308: Usage limit reached for 5 hour.",
            "code": "1308",
        },
    }
    assert anthropic.refusal_for(anthropic.refusal_for(api_errors.UPSTREAM_ERROR)).status == 500


def _call(index, arguments="", **fields):
    function = {
        "arguments": arguments,
        **({"name": fields.pop("name")} if "name" in fields else {}),
    }
    call = {"function": function, **fields}
    if index is not None:
        call["index"] = index
    return {"choices": [{"delta": {"tool_calls": [call]}}]}


def _final_message(events):
    snapshot, buffers = None, {}
    for event in events:
        snapshot = accumulate_event(
            event=EVENT.validate_python(event), current_snapshot=snapshot, json_bufs=buffers
        )
    return snapshot


@pytest.mark.parametrize(
    "chunks",
    [
        # Parallel calls whose fragments take turns (some upstreams stream them so).
        [
            _call(0, id="call_a", name="get_weather"),
            _call(1, id="call_b", name="get_time"),
            _call(0, '{"city":'),
            _call(1, '{"tz":'),
            _call(0, '"Paris"}'),
            _call(1, '"UTC"}'),
        ],
        # One after the other, the usual way.
        [
            _call(0, '{"city":', id="call_a", name="get_weather"),
            _call(0, '"Paris"}'),
            _call(1, '{"tz":"UTC"}', id="call_b", name="get_time"),
            _call(0, ""),  # a stray empty fragment of an earlier call
        ],
        # No index at all: each new id is a new call.
        [
            _call(None, '{"city":"Paris"}', id="call_a", name="get_weather"),
            _call(None, '{"tz":"UTC"}', id="call_b", name="get_time"),
        ],
    ],
)
def test_parallel_tool_calls_become_whole_tool_use_blocks(chunks):
    translator = anthropic.StreamTranslator(message_id="m", model="glm-4.7", input_estimate=1)
    events = [translator.opening_event()]
    for chunk in [*chunks, {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]}]:
        events += translator.events_of(chunk)
    events += translator.closing_events()
    message = _final_message(events)
    calls = [(block.id, block.name, block.input) for block in message.content]
    assert calls == [
        ("call_a", "get_weather", {"city": "Paris"}),
        ("call_b", "get_time", {"tz": "UTC"}),
    ]
    assert message.stop_reason == "tool_use"


def test_a_thinking_block_closes_with_a_signature_and_tools_then_text_still_stop_for_tool_use():
    translator = anthropic.StreamTranslator(message_id="m", model="glm-4.7", input_estimate=1)
    events = [translator.opening_event()]
    for chunk in [
        {"choices": [{"delta": {"reasoning_content": "想"}}]},
        _call(0, "{}", id="call_a", name="ls"),
        {"choices": [{"delta": {"content": "Listing."}, "finish_reason": "stop"}]},
    ]:
        events += translator.events_of(chunk)
    events += translator.closing_events()
    message = _final_message(events)
    assert [block.type for block in message.content] == ["thinking", "tool_use", "text"]
    assert message.content[0].signature == "" and message.stop_reason == "tool_use"


def test_an_error_result_and_thinking_sent_back_reach_an_openai_upstream():
    body = {
        "model": "m",
        "max_tokens": 5,
        "messages": [
            {"role": "user", "content": "run it"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "run the tool", "signature": "s"},
                    {"type": "tool_use", "id": "t1", "name": "bash", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": "boom",
                        "is_error": True,
                    }
                ],
            },
        ],
    }
    converted = anthropic.openai_body(body, "glm-4.7")
    assert converted["messages"][1]["reasoning_content"] == "run the tool"
    assert converted["messages"][2] == {
        "role": "tool",
        "tool_call_id": "t1",
        "content": "Error: boom",
    }
    # Anthropic's models think only when asked; GLM-4.7 is told so.
    assert converted["thinking"] == {"type": "disabled"}
    enabled = anthropic.openai_body(
        {**body, "thinking": {"type": "enabled", "budget_tokens": 9}}, "m"
    )
    assert enabled["thinking"] == {"type": "enabled"}
