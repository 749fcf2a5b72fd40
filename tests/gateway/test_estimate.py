"""The admission estimate counts every field of the body the upstream bills (tools, tool
calls, response_format, images), so what it reserves bounds the bill, and a body whose size
is in its tools takes the room it will cost."""

import json

import pytest
from asgiref.sync import sync_to_async

from billing.selectors import estimate_request
from console.money import NANO_PER_UNIT
from gateway import services
from projects.services import project_set_cap
from tests.asynchronous import run_async
from tests.gateway.test_chat import BODY, error_of, post
from usage.models import UsageRecord

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": f"lookup_{index}",
            "description": "Looks a record up by its number. " * 40,
            "parameters": {"type": "object", "properties": {"id": {"type": "integer"}}},
        },
    }
    for index in range(100)
]


def tokens_of_text(text: str) -> int:
    return -(-len(text) * 10 // 16)


@run_async
async def test_every_forwarded_field_is_billed_and_bounded_by_the_estimate(funded):
    account, raw, _key = funded
    body = {
        "model": "glm-4.7",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "What is in record 7?"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup_7", "arguments": json.dumps({"id": 7})},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "Record 7: 智谱 " * 50},
        ],
        "tools": TOOLS,
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "max_tokens": 20,
    }
    response = await post(raw, body)
    assert response.status_code == 200
    record = await UsageRecord.objects.aget(request_id=response["x-request-id"])
    # The upstream billed the tools (over 80,000 characters of them), not just the text.
    assert record.input_tokens > tokens_of_text(json.dumps(TOOLS, separators=(",", ":")))
    estimate = await sync_to_async(estimate_request)(
        account=account,
        model="glm-4.7",
        messages=body["messages"],
        max_tokens=20,
        body=body,
    )
    assert record.input_tokens <= estimate.input_tokens
    assert 0 < record.fee_nano <= estimate.cost_nano


@run_async
async def test_a_context_sized_tools_array_takes_the_room_it_will_cost_under_a_cap(funded):
    """A body of empty messages and 100 tools (about 50,000 tokens) in flight under a cap
    with ¥0.01 left holds more than that room: the next request is refused, instead of both
    being admitted on the messages' size and billed past the cap."""
    account, raw, key = funded
    project = await sync_to_async(lambda: key.project)()
    await sync_to_async(project_set_cap)(
        project=project, cap_nano=NANO_PER_UNIT // 100, mode="block", actor=None
    )
    auth = await sync_to_async(services.authenticate)(f"Bearer {raw}")
    tools_body = {
        "model": "glm-4.7",
        "messages": [{"role": "user", "content": ""}],
        "tools": TOOLS,
        "max_tokens": 10,
    }
    in_flight = await sync_to_async(services.admit)(
        auth=auth, body=tools_body, request_id=services.new_request_id()
    )
    assert isinstance(in_flight, services.Admitted)
    assert in_flight.reserved_nano > NANO_PER_UNIT // 100
    try:
        response = await post(raw)
        assert (response.status_code, error_of(response)) == (429, "1122")
    finally:
        await sync_to_async(services.release)(in_flight)


@pytest.mark.parametrize("choices", [2, 0, "2", True, 1.5])
@run_async
async def test_more_than_one_choice_is_refused_as_bigmodel_does(funded, choices):
    _account, raw, _key = funded
    response = await post(raw, {**BODY, "n": choices})
    assert (response.status_code, error_of(response)) == (400, "1210")
    assert "n must be 1" in json.loads(response.content)["error"]["message"]


@run_async
async def test_one_choice_or_none_named_is_answered(funded):
    _account, raw, _key = funded
    for body in ({**BODY, "n": 1}, {**BODY, "n": None}):
        assert (await post(raw, body)).status_code == 200
