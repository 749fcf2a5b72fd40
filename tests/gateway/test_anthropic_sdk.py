"""The official anthropic SDK against uvicorn on the Anthropic-compatible endpoint (issue 23):
messages.create and messages.stream, a full tool-use round trip, count_tokens, a wrong key,
a capped project, a client closing mid-stream; a coding-plan account counts prompts and
leaves the balance alone, a pay-as-you-go account is charged exactly as the OpenAI endpoint
charges the same tokens. PostgreSQL only: the server process must see the test data."""

import time

import anthropic
import httpx
import pytest
from django.urls import reverse

from billing.models import LedgerEntry, Wallet
from billing.reconciliation import audit_all
from console.money import NANO_PER_UNIT
from console.shared_state import account_hold_key, concurrency_key, shared_state
from history.models import PromptLog
from plans.models import Plan
from plans.quota import quota_status
from plans.services import plan_subscribe
from projects.services import project_set_cap
from tests.billing.factories import funded_account
from tests.conftest import requires_postgres
from usage.models import UsageRecord

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]

# glm-4.7's CNY price per million tokens, in nano (the catalogue's), as tests/gateway/test_sdk.py.
INPUT_NANO, OUTPUT_NANO = 4_320_000_000, 15_840_000_000

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
}


@pytest.fixture
def base(uvicorn_site):
    return uvicorn_site + "/api/anthropic"


def client_for(base, raw, **options):
    return anthropic.Anthropic(api_key=raw, base_url=base, max_retries=0, **options)


def expected_fee(record) -> int:
    return (record.input_tokens * INPUT_NANO + record.output_tokens * OUTPUT_NANO + 500_000) // (
        1_000_000
    )


def test_create_and_stream_are_charged_like_the_openai_endpoint_and_recorded(base, funded, client):
    account, raw, _key = funded
    sdk = client_for(base, raw)
    message = sdk.messages.create(
        model="GLM-4.7",
        max_tokens=40,
        system="You are terse.",
        messages=[{"role": "user", "content": "你好，写一个快速排序"}],
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.model == "GLM-4.7"  # named as the client asked
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason in ("end_turn", "max_tokens")
    with sdk.messages.stream(
        model="glm-4.7", max_tokens=30, messages=[{"role": "user", "content": "Stream please"}]
    ) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed and final.content[0].text == streamed
    records = {r.stream: r for r in UsageRecord.objects.filter(account=account)}
    assert records[False].endpoint == records[True].endpoint == UsageRecord.Endpoint.ANTHROPIC
    assert (records[False].input_tokens, records[False].output_tokens) == (
        message.usage.input_tokens,
        message.usage.output_tokens,
    )
    assert records[True].output_tokens == final.usage.output_tokens
    assert not records[True].estimated
    for record in records.values():
        assert record.model == "glm-4.7" and record.status == 200
        entry = LedgerEntry.objects.get(request_id=record.request_id)
        assert entry.fee_nano == record.fee_nano == expected_fee(record) > 0
    log = PromptLog.objects.get(request_id=records[True].request_id)
    assert log.response_text == streamed
    first = PromptLog.objects.get(request_id=records[False].request_id)
    assert first.messages[0] == {"role": "system", "content": "You are terse."}
    # History search finds an Anthropic-format prompt like any other.
    client.force_login(account.memberships.get().user)
    found = client.get(reverse("history:search"), {"q": "快速排序"}).content.decode()
    assert f"/history/{first.pk}/" in found
    assert f"/history/{log.pk}/" not in found
    assert audit_all()[1] == []


def test_a_claude_name_is_served_by_its_alias_and_both_names_are_kept(base, funded):
    account, raw, _key = funded
    message = client_for(base, raw).messages.create(
        model="claude-sonnet-4-5-20250929",
        max_tokens=20,
        messages=[{"role": "user", "content": "hi"}],
    )
    assert message.model == "claude-sonnet-4-5-20250929"
    record = UsageRecord.objects.get(account=account)
    assert (record.model, record.requested_model) == ("glm-4.7", "claude-sonnet-4-5-20250929")
    with pytest.raises(anthropic.NotFoundError) as error:
        client_for(base, raw).messages.create(
            model="gpt-5", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
        )
    assert error.value.body["error"]["type"] == "not_found_error"


def test_a_tool_use_round_trip_streamed_and_not(base, funded):
    account, raw, _key = funded
    client = client_for(base, raw)
    question = {"role": "user", "content": "What is the weather in Beijing? Use get_weather."}
    first = client.messages.create(
        model="glm-4.7", max_tokens=200, tools=[WEATHER], messages=[question]
    )
    assert first.stop_reason == "tool_use"
    call = next(block for block in first.content if block.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"city": "glm"}
    with client.messages.stream(
        model="glm-4.7", max_tokens=200, tools=[WEATHER], messages=[question]
    ) as stream:
        streamed = stream.get_final_message()
    streamed_call = next(block for block in streamed.content if block.type == "tool_use")
    assert (streamed.stop_reason, streamed_call.name, streamed_call.input) == (
        "tool_use",
        "get_weather",
        {"city": "glm"},
    )
    answer = client.messages.create(
        model="glm-4.7",
        max_tokens=60,
        tools=[WEATHER],
        messages=[
            question,
            {"role": "assistant", "content": [call.model_dump(exclude_none=True)]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "晴, 25°C"}],
            },
        ],
    )
    assert answer.stop_reason in ("end_turn", "max_tokens")
    assert answer.content[0].type == "text" and answer.content[0].text
    assert UsageRecord.objects.filter(account=account, status=200).count() == 3
    assert audit_all()[1] == []


def test_count_tokens_is_free_and_writes_nothing(base, funded):
    account, raw, _key = funded
    before = Wallet.objects.get(account=account).recharge_nano
    counted = client_for(base, raw).messages.count_tokens(
        model="claude-haiku-4-5", messages=[{"role": "user", "content": "Count me, 数一数"}]
    )
    assert counted.input_tokens > 0
    message = client_for(base, raw).messages.create(
        model="claude-haiku-4-5",
        max_tokens=5,
        messages=[{"role": "user", "content": "Count me, 数一数"}],
    )
    assert message.usage.input_tokens == counted.input_tokens  # admission's count, the same
    assert UsageRecord.objects.filter(account=account).count() == 1
    assert PromptLog.objects.filter(account=account).count() == 1
    assert Wallet.objects.get(account=account).recharge_nano < before  # the message, not the count


def test_a_wrong_key_and_a_capped_project_as_the_sdk_sees_them(base, funded):
    account, raw, key = funded
    with pytest.raises(anthropic.AuthenticationError) as error:
        client_for(base, "sk-wrong").messages.create(
            model="glm-4.7", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    assert error.value.body["error"]["type"] == "authentication_error"
    # Claude Code with ANTHROPIC_AUTH_TOKEN sends Authorization: Bearer instead of x-api-key.
    bearer = anthropic.Anthropic(auth_token=raw, base_url=base, max_retries=0)
    assert bearer.messages.create(
        model="glm-4.7-flash", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
    ).content
    project_set_cap(
        project=key.project, cap_nano=NANO_PER_UNIT // 100_000, mode="block", actor=None
    )
    client_for(base, raw).messages.create(  # the first spends past the tiny cap, as on /paas
        model="glm-4.7", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    with pytest.raises(anthropic.RateLimitError) as error:
        client_for(base, raw).messages.create(
            model="glm-4.7", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        )
    assert error.value.status_code == 429
    assert error.value.body["error"]["type"] == "rate_limit_error"
    assert "1122" in str(error.value) and error.value.body["error"]["message"].startswith("1122")
    refused = UsageRecord.objects.get(account=account, code="1122")
    assert refused.endpoint == UsageRecord.Endpoint.ANTHROPIC and refused.fee_nano == 0


def test_a_client_leaving_mid_stream_is_billed_and_releases_its_slot(base, funded):
    account, raw, _key = funded
    with (
        httpx.Client(timeout=30) as http,
        http.stream(
            "POST",
            base + "/v1/messages?beta=true",
            headers={"x-api-key": raw, "anthropic-version": "2023-06-01"},
            json={
                "model": "glm-4.7",
                "max_tokens": 1000,
                "stream": True,
                "messages": [{"role": "user", "content": "x"}],
                "simulator": {"output_tokens": 400, "chunk_ms": 20},
            },
        ) as response,
    ):
        for index, _line in enumerate(response.iter_lines()):
            if index > 20:
                break  # hang up with the stream half sent
    deadline = time.monotonic() + 20
    while not UsageRecord.objects.filter(account=account).exists():
        assert time.monotonic() < deadline, "no usage record after the client left"
        time.sleep(0.2)
    record = UsageRecord.objects.get(account=account)
    assert record.code == "client_closed" and 0 < record.output_tokens < 400
    assert record.fee_nano > 0
    state = shared_state()
    deadline = time.monotonic() + 10
    while state.slot_count(concurrency_key(account.pk)) or state.held(account_hold_key(account.pk)):
        assert time.monotonic() < deadline, "slot or reservation not released"
        time.sleep(0.2)
    assert audit_all()[1] == []


def test_a_coding_plan_account_counts_prompts_and_leaves_the_balance_alone(base, key_for):
    account = funded_account(recharge_units=1_000, bonus_units=100)
    plan_subscribe(account=account, plan=Plan.objects.get(code="lite"), period="month", actor=None)
    raw, _key = key_for(account)
    wallet = Wallet.objects.get(account=account)
    before = (wallet.recharge_nano, wallet.bonus_nano)
    entries = LedgerEntry.objects.filter(account=account).count()
    client = client_for(base, raw)
    client.messages.create(
        model="claude-opus-4-1", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
    )
    with client.messages.stream(
        model="glm-4.7", max_tokens=20, messages=[{"role": "user", "content": "again"}]
    ) as stream:
        stream.until_done()
    wallet.refresh_from_db()
    assert (wallet.recharge_nano, wallet.bonus_nano) == before
    assert LedgerEntry.objects.filter(account=account).count() == entries
    records = UsageRecord.objects.filter(account=account)
    assert [r.quota_milli for r in records] == [1000, 1000]
    assert all(r.plan_term_id and r.fee_nano == 0 for r in records)
    assert quota_status(account).windows[0].used == 2000
    # A model outside the plan is refused, never billed to the balance.
    with pytest.raises(anthropic.PermissionDeniedError) as error:
        client.messages.create(
            model="glm-5", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
        )
    assert error.value.body["error"]["message"].startswith("1311")
    assert audit_all()[1] == []
