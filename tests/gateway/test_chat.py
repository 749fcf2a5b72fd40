"""The gateway in-process (Django's async client): admission, refusals, records, money."""

import json

import pytest
from django.test import AsyncClient

from billing.models import LedgerEntry, Wallet
from console.models import Account, Tier
from console.money import NANO_PER_UNIT
from console.shared_state import account_hold_key, concurrency_key
from gateway.settlement import charge_usage
from history.models import PromptLog
from keys.services import api_key_revoke
from projects.services import project_archive, project_create, project_set_cap
from tests.asynchronous import run_async
from tests.billing.factories import funded_account
from usage.models import UsageRecord

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]

URL = "/api/paas/v4/chat/completions"
BODY = {"model": "glm-4.7", "messages": [{"role": "user", "content": "你好，智谱！Hello"}]}


async def post(raw, body=BODY):
    client = AsyncClient()
    headers = {"Authorization": f"Bearer {raw}"} if raw else {}
    payload = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return await client.post(URL, payload, content_type="application/json", headers=headers)


def error_of(response):
    return json.loads(response.content)["error"]["code"]


@run_async
async def test_a_completion_is_answered_metered_and_logged(funded, django_assert_max_num_queries):
    account, raw, key = funded
    response = await post(
        raw,
        {
            **BODY,
            "max_tokens": 50,
            "temperature": None,
            "top_p": None,
            "tools": None,
            "request_id": "client-123",
        },
    )
    assert response.status_code == 200
    data = json.loads(response.content)
    assert data["choices"][0]["message"]["content"]
    assert data["request_id"] == "client-123"
    request_id = response["x-request-id"]
    # ¥100 paid promoted the account from Free (30 a minute) to Standard (300 a minute).
    assert response["x-ratelimit-limit-requests"] == "300"
    record = await UsageRecord.objects.aget(request_id=request_id)
    usage = data["usage"]
    assert (record.input_tokens, record.output_tokens) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    assert record.client_request_id == "client-123" and record.status == 200
    # Priced at the listed CNY prices (¥4.32 / ¥15.84 per 1M), no pack on this account.
    expected_fee = (
        usage["prompt_tokens"] * 4_320_000_000
        + usage["completion_tokens"] * 15_840_000_000
        + 500_000
    ) // 1_000_000
    assert record.fee_nano == expected_fee
    entry = await LedgerEntry.objects.aget(request_id=request_id)
    assert entry.fee_nano == expected_fee
    log = await PromptLog.objects.aget(request_id=request_id)
    assert (
        log.messages == BODY["messages"]
        and log.response_text == data["choices"][0]["message"]["content"]
    )


@run_async
async def test_a_stream_passes_chunks_and_bills_the_final_usage(funded):
    account, raw, key = funded
    response = await post(raw, {**BODY, "stream": True, "stream_options": {"include_usage": True}})
    assert response.status_code == 200 and response["content-type"] == "text/event-stream"
    events = [line async for line in response.streaming_content]
    text = b"".join(events).decode()
    assert text.rstrip().endswith("data: [DONE]")
    chunks = [json.loads(line[6:]) for line in text.split("\n\n") if line.startswith("data: {")]
    usage = next(chunk["usage"] for chunk in chunks if chunk.get("usage"))
    record = await UsageRecord.objects.aget(request_id=response["x-request-id"])
    assert (record.input_tokens, record.output_tokens, record.stream) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
        True,
    )


@run_async
async def test_the_usage_chunk_is_hidden_from_clients_that_did_not_ask(funded):
    _account, raw, _key = funded
    response = await post(raw, {**BODY, "stream": True})
    text = b"".join([line async for line in response.streaming_content]).decode()
    assert '"usage"' not in text
    record = await UsageRecord.objects.aget(request_id=response["x-request-id"])
    assert record.output_tokens > 0 and not record.estimated


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ("{not json", 400, "1210"),
        ({"model": "glm-4.7"}, 400, "1214"),
        ({**BODY, "messages": []}, 400, "1214"),
        ({**BODY, "messages": [{"content": "no role"}]}, 400, "1214"),
        ({**BODY, "max_tokens": -5}, 400, "1210"),
        ({**BODY, "max_tokens": "ten"}, 400, "1210"),
        ({**BODY, "temperature": 7}, 400, "1210"),
        ({**BODY, "stream": "yes"}, 400, "1210"),
        ({**BODY, "model": "gpt-17"}, 400, "1211"),
        ([1, 2, 3], 400, "1210"),
        (b"\xff\xfe\x00garbage", 400, "1210"),
    ],
)
@run_async
async def test_bad_input_is_refused_recorded_and_costs_nothing(funded, body, status, code):
    account, raw, _key = funded
    before = await Wallet.objects.aget(account=account)
    response = await post(raw, body)
    assert (response.status_code, error_of(response)) == (status, code)
    assert not await LedgerEntry.objects.filter(kind="charge").aexists()
    after = await Wallet.objects.aget(account=account)
    assert (after.recharge_nano, after.bonus_nano) == (before.recharge_nano, before.bonus_nano)
    record = await UsageRecord.objects.aget(request_id=response["x-request-id"])
    assert (record.status, record.code, record.fee_nano) == (status, code, 0)


@run_async
async def test_a_body_over_the_limit_is_413(funded, settings):
    _account, raw, _key = funded
    settings.GATEWAY_MAX_BODY_BYTES = 1_000
    big = {**BODY, "messages": [{"role": "user", "content": "x" * 5_000}]}
    response = await post(raw, big)
    assert (response.status_code, error_of(response)) == (413, "1210")


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "1001"),
        ("Basic abc", "1001"),
        ("Bearer nonsense", "1002"),
        ("Bearer " + "0" * 32 + ".aaaaaaaaaaaaaaaaaaaaaa", "1002"),
    ],
)
@run_async
async def test_missing_or_invalid_keys_are_401_and_leave_no_record(header, code):
    client = AsyncClient()
    headers = {"Authorization": header} if header else {}
    response = await client.post(
        URL, json.dumps(BODY), content_type="application/json", headers=headers
    )
    assert (response.status_code, error_of(response)) == (401, code)
    assert not await UsageRecord.objects.aexists()


@run_async
async def test_a_revoked_key_is_refused_on_the_next_call(funded):
    _account, raw, key = funded
    assert (await post(raw)).status_code == 200
    from asgiref.sync import sync_to_async

    await sync_to_async(api_key_revoke)(key=key, actor=None)
    response = await post(raw)
    assert (response.status_code, error_of(response)) == (401, "1004")


@run_async
async def test_an_admin_read_key_cannot_call_inference(funded, key_for):
    from asgiref.sync import sync_to_async

    account, _raw, _key = funded
    raw, _admin_key = await sync_to_async(key_for)(account, scope="admin-read")
    response = await post(raw)
    assert (response.status_code, error_of(response)) == (401, "1000")


@run_async
async def test_suspended_accounts_and_archived_projects_are_refused_with_a_record(funded, key_for):
    from asgiref.sync import sync_to_async

    account, raw, _key = funded
    project = await sync_to_async(project_create)(account=account, name="Old")
    other_raw, _other = await sync_to_async(key_for)(account, project=project)
    await sync_to_async(project_archive)(project=project, actor=None)
    response = await post(other_raw)
    assert (response.status_code, error_of(response)) == (403, "1121")
    await Account.objects.filter(pk=account.pk).aupdate(status="suspended")
    response = await post(raw)
    assert (response.status_code, error_of(response)) == (403, "1120")
    assert await UsageRecord.objects.filter(code__in=["1120", "1121"]).acount() == 2


@run_async
async def test_in_arrears_paid_models_are_refused_but_free_ones_pass(key_for):
    from asgiref.sync import sync_to_async

    account = await sync_to_async(funded_account)(recharge_units=1)
    raw, _key = await sync_to_async(key_for)(account)
    await sync_to_async(charge_usage)(
        account=account, model="glm-4.7", input_tokens=0, output_tokens=1_000_000, request_id="big"
    )
    response = await post(raw)
    assert (response.status_code, error_of(response)) == (429, "1113")
    assert (await post(raw, {**BODY, "model": "glm-4.7-flash"})).status_code == 200


@run_async
async def test_a_block_mode_cap_refuses_once_reached(funded):
    from asgiref.sync import sync_to_async

    account, raw, key = funded
    project = await sync_to_async(lambda: key.project)()
    await sync_to_async(project_set_cap)(
        project=project, cap_nano=NANO_PER_UNIT // 100_000, mode="block", actor=None
    )
    assert (await post(raw)).status_code == 200  # the first spends past the tiny cap
    response = await post(raw)
    assert (response.status_code, error_of(response)) == (429, "1122")
    await sync_to_async(project_set_cap)(
        project=project, cap_nano=NANO_PER_UNIT // 100_000, mode="alert", actor=None
    )
    assert (await post(raw)).status_code == 200


@run_async
async def test_the_tier_requests_per_minute_are_enforced(funded):
    account, raw, _key = funded
    tier = await Tier.objects.acreate(
        slug="tiny", name="Tiny", rank=99, retention_days=1, requests_per_minute=2, concurrency=5
    )
    await Account.objects.filter(pk=account.pk).aupdate(tier=tier)
    assert (await post(raw)).status_code == 200
    second = await post(raw)
    assert second.status_code == 200 and second["x-ratelimit-remaining-requests"] == "0"
    third = await post(raw)
    assert (third.status_code, error_of(third)) == (429, "1303")
    assert third["x-ratelimit-limit-requests"] == "2"


@run_async
async def test_every_slot_and_reservation_is_released(funded, fresh_shared_state):
    account, raw, key = funded
    for body in (BODY, {**BODY, "stream": True}, {**BODY, "model": "nope"}):
        response = await post(raw, body)
        if body.get("stream"):
            [line async for line in response.streaming_content]
    state = fresh_shared_state
    from asgiref.sync import sync_to_async

    assert await sync_to_async(state.slot_count)(concurrency_key(account.pk)) == 0
    assert await sync_to_async(state.held)(account_hold_key(account.pk)) == 0


@run_async
async def test_the_model_list(funded):
    _account, raw, _key = funded
    response = await AsyncClient().get(
        "/api/paas/v4/models", headers={"Authorization": f"Bearer {raw}"}
    )
    ids = [model["id"] for model in json.loads(response.content)["data"]]
    assert "glm-4.7" in ids and "glm-4.7-flash" in ids
    assert response["x-request-id"]


@run_async
async def test_a_10_mb_body_is_413_and_costs_nothing(funded):
    account, raw, _key = funded
    big = json.dumps({**BODY, "messages": [{"role": "user", "content": "x" * (10 * 1024 * 1024)}]})
    response = await post(raw, big)
    assert (response.status_code, error_of(response)) == (413, "1210")
    assert not await LedgerEntry.objects.filter(kind="charge").aexists()


@run_async
async def test_an_unreachable_upstream_is_502_recorded_and_free(funded):
    from gateway.models import UpstreamRoute

    account, raw, _key = funded
    await UpstreamRoute.objects.filter(model="glm-4.7").aupdate(
        base_url="http://127.0.0.1:9/v1", timeout_seconds=2
    )
    for body in (BODY, {**BODY, "stream": True}):
        response = await post(raw, body)
        if body.get("stream"):
            text = b"".join([line async for line in response.streaming_content]).decode()
            assert '"code":"1230"' in text
        else:
            assert (response.status_code, error_of(response)) == (502, "1230")
        record = await UsageRecord.objects.aget(request_id=response["x-request-id"])
        assert (record.status, record.code, record.fee_nano) == (502, "1230", 0)
    assert not await LedgerEntry.objects.filter(kind="charge").aexists()
