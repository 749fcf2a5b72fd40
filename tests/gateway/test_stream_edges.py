"""Streams and bills at the edges: an upstream breaking off mid-answer, an answer without
usage, a settlement failing on the upstream-failure path, and a stream outliving the TTL of
its slot and holds. Faults come from the simulator's fault knobs (gateway/simulator.py)."""

import json
import time

import pytest
from asgiref.sync import sync_to_async
from django.db import OperationalError

from billing.models import LedgerEntry
from billing.selectors import estimate_request, text_tokens
from billing.services import pack_grant
from console.shared_state import concurrency_key, pack_hold_keys, reservation_keys
from gateway import settlement
from tests.asynchronous import run_async
from tests.gateway.test_chat import BODY, post
from usage.models import UsageRecord

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]


async def events_of(response) -> list:
    text = b"".join([chunk async for chunk in response.streaming_content]).decode()
    return [json.loads(line[6:]) for line in text.split("\n\n") if line.startswith("data: {")]


def delivered_text(events) -> str:
    return "".join(
        (choice.get("delta") or {}).get("content") or ""
        for event in events
        for choice in event.get("choices") or []
    )


@run_async
async def test_an_upstream_breaking_off_mid_stream_bills_what_was_delivered(funded):
    account, raw, _key = funded
    body = {**BODY, "stream": True, "simulator": {"fail_after_tokens": 5, "output_tokens": 50}}
    response = await post(raw, body)
    events = await events_of(response)
    assert events[-1]["error"]["code"] == "1230"
    assert "charged" in events[-1]["error"]["message"]
    assert delivered_text(events)
    record = await UsageRecord.objects.aget(request_id=response["x-request-id"])
    assert (record.status, record.code, record.estimated) == (502, "1230", True)
    estimate = await sync_to_async(estimate_request)(
        account=account, model="glm-4.7", messages=BODY["messages"], max_tokens=None, body=body
    )
    assert (record.input_tokens, record.output_tokens) == (estimate.input_tokens, 5)
    assert record.fee_nano > 0
    charge = await LedgerEntry.objects.aget(request_id=response["x-request-id"], kind="charge")
    assert charge.fee_nano == record.fee_nano


@run_async
async def test_an_upstream_failing_before_any_text_still_costs_nothing(funded):
    _account, raw, _key = funded
    body = {**BODY, "stream": True, "simulator": {"fail_after_tokens": 0}}
    response = await post(raw, body)
    events = await events_of(response)
    assert events[-1]["error"]["code"] == "1230" and not delivered_text(events)
    record = await UsageRecord.objects.aget(request_id=response["x-request-id"])
    assert (record.status, record.fee_nano) == (502, 0)
    assert not await LedgerEntry.objects.filter(kind="charge").aexists()


@run_async
async def test_an_answer_without_usage_is_counted_and_marked_estimated(funded):
    account, raw, _key = funded
    body = {**BODY, "simulator": {"omit_usage": True, "output_tokens": 30}}
    response = await post(raw, body)
    assert response.status_code == 200
    answer = json.loads(response.content)
    assert "usage" not in answer
    text = answer["choices"][0]["message"]["content"]
    record = await UsageRecord.objects.aget(request_id=response["x-request-id"])
    estimate = await sync_to_async(estimate_request)(
        account=account, model="glm-4.7", messages=BODY["messages"], max_tokens=None, body=body
    )
    assert record.estimated
    assert (record.input_tokens, record.output_tokens) == (
        estimate.input_tokens,
        text_tokens(len(text)),
    )
    assert record.fee_nano > 0


@run_async
async def test_a_settlement_failing_after_an_upstream_failure_is_not_settled_again(
    funded, monkeypatch, fresh_shared_state
):
    account, raw, _key = funded
    calls = []

    def settle_refused_by_the_database(**kwargs):
        calls.append(kwargs["outcome"])
        raise OperationalError("connection failed (injected)")

    monkeypatch.setattr(settlement, "settle", settle_refused_by_the_database)
    body = {**BODY, "stream": True, "simulator": {"fail_after_tokens": 3}}
    response = await post(raw, body)
    events = await events_of(response)
    assert events[-1]["error"]["code"] == "1241"
    assert [outcome.code for outcome in calls] == ["1230"]
    assert not await UsageRecord.objects.filter(request_id=response["x-request-id"]).aexists()
    assert not await LedgerEntry.objects.filter(account=account, kind="charge").aexists()
    assert await sync_to_async(fresh_shared_state.slot_count)(concurrency_key(account.pk)) == 0


@run_async
async def test_a_stream_longer_than_the_ttl_keeps_its_slot_and_hold(
    funded, settings, fresh_shared_state
):
    """A 1-second TTL and a stream of about 3 seconds: past the TTL, the stream still holds
    its concurrency slot and its money; both come back when it ends."""
    settings.GATEWAY_RESERVATION_TTL = 1
    account, raw, key = funded
    project = await sync_to_async(lambda: key.project)()
    account_key, project_key = reservation_keys(account_id=account.pk, project_id=project.pk)
    shared = fresh_shared_state
    body = {
        **BODY,
        "stream": True,
        "max_tokens": 30,
        "simulator": {"output_tokens": 30, "chunk_ms": 100},
    }
    response = await post(raw, body)
    started = time.monotonic()
    seen_past_the_ttl = []
    async for _chunk in response.streaming_content:
        if time.monotonic() - started > 1.6 and not seen_past_the_ttl:
            seen_past_the_ttl.append(
                (
                    await sync_to_async(shared.slot_count)(concurrency_key(account.pk)),
                    await sync_to_async(shared.held)(account_key) > 0,
                    await sync_to_async(shared.held)(project_key) > 0,
                )
            )
    assert seen_past_the_ttl == [(1, True, True)]
    assert await sync_to_async(shared.slot_count)(concurrency_key(account.pk)) == 0
    assert await sync_to_async(shared.held)(account_key) == 0


@run_async
async def test_a_pack_covered_stream_longer_than_the_ttl_keeps_its_pack_tokens(
    funded, settings, fresh_shared_state
):
    """The same long stream paid by a resource pack: its pack-token hold lives as long as it
    runs, so no concurrent request can count on the same tokens meanwhile."""
    settings.GATEWAY_RESERVATION_TTL = 1
    account, raw, _key = funded
    await sync_to_async(pack_grant)(account=account, tokens=1_000_000, reference="long-stream")
    _model_key, general_key = pack_hold_keys(account_id=account.pk, model="glm-4.7")
    shared = fresh_shared_state
    body = {
        **BODY,
        "stream": True,
        "max_tokens": 30,
        "simulator": {"output_tokens": 30, "chunk_ms": 100},
    }
    response = await post(raw, body)
    started = time.monotonic()
    held_past_the_ttl = []
    async for _chunk in response.streaming_content:
        if time.monotonic() - started > 1.6 and not held_past_the_ttl:
            held_past_the_ttl.append(await sync_to_async(shared.held)(general_key))
    assert held_past_the_ttl and held_past_the_ttl[0] > 0
    assert await sync_to_async(shared.held)(general_key) == 0
