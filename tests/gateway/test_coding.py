"""The coding endpoint (issue 22) in-process: the same OpenAI-compatible API and key, billed
to the account's coding plan (never to the balance or packs), with BigModel's plan codes."""

import json
from datetime import timedelta

import pytest
from django.test import AsyncClient
from django.utils import timezone

from billing.models import LedgerEntry, ResourcePack, Wallet
from billing.reconciliation import audit_all
from billing.services import pack_grant
from gateway.models import UpstreamRoute
from history.models import PromptLog
from plans.models import Plan, PlanLimits, Subscription
from plans.services import plan_subscribe
from tests.asynchronous import run_async
from tests.billing.factories import funded_account
from usage.models import UsageRecord

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]

CODING = "/api/coding/paas/v4/"
PAYG = "/api/paas/v4/"
ASK = {"model": "GLM-4.7", "messages": [{"role": "user", "content": "重构这个函数 please"}]}


async def post(raw, body=ASK, base=CODING):
    return await AsyncClient().post(
        base + "chat/completions",
        json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )


async def get(raw, base=CODING):
    return await AsyncClient().get(base + "models", headers={"Authorization": f"Bearer {raw}"})


def error_of(response):
    return json.loads(response.content)["error"]


@pytest.fixture
def subscriber(key_for):
    """(account, raw key, subscription): Lite, bought from a balance that has some left."""

    def make(code="lite", **limits):
        account = funded_account(recharge_units=1_000, bonus_units=100)
        plan = Plan.objects.get(code=code)
        if limits:
            current = PlanLimits.objects.filter(plan=plan).latest("effective_from")
            PlanLimits.objects.create(
                plan=plan,
                effective_from=timezone.now() - timedelta(seconds=1),
                prompts_5h=limits.get("prompts_5h", current.prompts_5h),
                prompts_week=current.prompts_week,
                prompts_month=current.prompts_month,
                mcp_calls_month=current.mcp_calls_month,
                concurrency=current.concurrency,
            )
        subscription = plan_subscribe(account=account, plan=plan, period="month", actor=None)
        raw, _key = key_for(account)
        return account, raw, subscription

    return make


def money(account):
    wallet = Wallet.objects.get(account=account)
    packs = list(
        ResourcePack.objects.filter(account=account).values_list("tokens_remaining", flat=True)
    )
    return wallet.recharge_nano, wallet.bonus_nano, wallet.arrears_nano, packs


@run_async
async def test_a_coding_request_is_answered_and_billed_to_the_plan_not_the_wallet(subscriber):
    from asgiref.sync import sync_to_async

    account, raw, subscription = await sync_to_async(subscriber)()
    await sync_to_async(pack_grant)(
        account=account, tokens=1_000_000, reference="coding-test", reason="test"
    )
    before = await sync_to_async(money)(account)
    entries = await LedgerEntry.objects.filter(account=account).acount()
    response = await post(raw)
    assert response.status_code == 200, response.content
    data = json.loads(response.content)
    assert data["choices"][0]["message"]["content"]
    record = await UsageRecord.objects.aget(request_id=response["x-request-id"])
    term = await subscription.terms.aget()
    assert (record.status, record.model, record.plan_term_id, record.quota_milli) == (
        200,
        "glm-4.7",
        term.pk,
        1000,
    )
    assert record.fee_nano == 0 and record.pack_tokens == 0 and record.input_tokens > 0
    assert await PromptLog.objects.filter(request_id=record.request_id).aexists()
    # The balance and the packs are untouched; no ledger entry.
    assert await sync_to_async(money)(account) == before
    assert await LedgerEntry.objects.filter(account=account).acount() == entries
    assert (await sync_to_async(audit_all)())[1] == []


@run_async
async def test_the_same_key_on_the_pay_as_you_go_endpoint_still_pays_from_the_wallet(subscriber):
    from asgiref.sync import sync_to_async

    account, raw, _ = await sync_to_async(subscriber)()
    before = await sync_to_async(money)(account)
    response = await post(raw, base=PAYG, body={**ASK, "model": "glm-4.7"})
    assert response.status_code == 200
    record = await UsageRecord.objects.aget(request_id=response["x-request-id"])
    assert record.plan_term_id is None and record.quota_milli == 0 and record.fee_nano > 0
    assert (await sync_to_async(money)(account))[:2] != before[:2]


@run_async
async def test_no_plan_a_model_outside_the_plan_and_an_unknown_model_are_refused(
    subscriber, key_for
):
    from asgiref.sync import sync_to_async

    payg = await sync_to_async(funded_account)(recharge_units=100)
    raw_payg, _ = await sync_to_async(key_for)(payg)
    refused = await post(raw_payg)
    assert (refused.status_code, error_of(refused)["code"]) == (403, "1309")
    record = await UsageRecord.objects.aget(request_id=refused["x-request-id"])
    assert (record.status, record.code, record.fee_nano) == (403, "1309", 0)

    _, raw, _ = await sync_to_async(subscriber)("lite")
    outside = await post(raw, body={**ASK, "model": "glm-5"})
    assert (outside.status_code, error_of(outside)["code"]) == (403, "1311")
    assert "Lite" in error_of(outside)["message"] and "upgrade" in error_of(outside)["message"]
    unknown = await post(raw, body={**ASK, "model": "gpt-4o"})
    assert (unknown.status_code, error_of(unknown)["code"]) == (400, "1211")
    invalid = await post(raw, body={"model": "glm-4.7", "messages": []})
    assert (invalid.status_code, error_of(invalid)["code"]) == (400, "1214")


@run_async
async def test_glm_5_code_is_served_on_the_coding_endpoint_only(subscriber):
    from asgiref.sync import sync_to_async

    _, raw, _ = await sync_to_async(subscriber)("pro")
    coded = await post(raw, body={**ASK, "model": "GLM-5-Code"})
    assert coded.status_code == 200, coded.content
    assert json.loads(coded.content)["model"] == "glm-5-code"
    payg = await post(raw, body={**ASK, "model": "glm-5-code"}, base=PAYG)
    assert (payg.status_code, error_of(payg)["code"]) == (400, "1211")
    listed = [model["id"] for model in json.loads((await get(raw)).content)["data"]]
    assert "glm-5-code" in listed and "glm-5" in listed and "glm-4.7" in listed
    assert "glm-4.7-flash" not in listed  # not a coding model
    assert "glm-5-code" not in [m["id"] for m in json.loads((await get(raw, PAYG)).content)["data"]]


@run_async
async def test_the_models_list_is_the_plans_and_needs_a_plan(subscriber, key_for):
    from asgiref.sync import sync_to_async

    _, raw, _ = await sync_to_async(subscriber)("lite")
    listed = [model["id"] for model in json.loads((await get(raw)).content)["data"]]
    assert listed == ["glm-4.5", "glm-4.5-air", "glm-4.6", "glm-4.7"]
    payg = await sync_to_async(funded_account)(recharge_units=10)
    raw_payg, _ = await sync_to_async(key_for)(payg)
    refused = await get(raw_payg)
    assert (refused.status_code, error_of(refused)["code"]) == (403, "1309")
    anonymous = await AsyncClient().get(CODING + "models")
    assert (anonymous.status_code, error_of(anonymous)["code"]) == (401, "1001")


@run_async
async def test_a_used_up_window_answers_1308_with_its_reset_time_and_retry_after(subscriber):
    from asgiref.sync import sync_to_async

    _, raw, _ = await sync_to_async(subscriber)(prompts_5h=1)
    assert (await post(raw)).status_code == 200
    refused = await post(raw)
    assert (refused.status_code, error_of(refused)["code"]) == (429, "1308")
    assert error_of(refused)["message"].startswith(
        "Usage limit reached for 5 hour. Your limit will reset at "
    )
    assert 5 * 3600 - 60 <= int(refused["Retry-After"]) <= 5 * 3600


@run_async
async def test_an_upstream_failure_counts_nothing_and_gives_the_prompt_back(subscriber):
    from asgiref.sync import sync_to_async

    _, raw, _ = await sync_to_async(subscriber)(prompts_5h=1)
    await UpstreamRoute.objects.filter(model="glm-4.6").aupdate(
        base_url="http://127.0.0.1:9/v1", timeout_seconds=2
    )
    failed = await post(raw, body={**ASK, "model": "glm-4.6"})
    assert failed.status_code == 502
    record = await UsageRecord.objects.aget(request_id=failed["x-request-id"])
    assert record.quota_milli == 0 and record.plan_term_id is not None
    # The one prompt of the window is still there.
    assert (await post(raw)).status_code == 200


@run_async
async def test_a_lapsed_plan_refuses(subscriber):
    from asgiref.sync import sync_to_async

    account, raw, subscription = await sync_to_async(subscriber)()
    await Subscription.objects.filter(pk=subscription.pk).aupdate(
        auto_renew=False,
        period_end=timezone.now() - timedelta(minutes=1),
        period_start=timezone.now() - timedelta(days=31),
    )
    refused = await post(raw)
    assert (refused.status_code, error_of(refused)["code"]) == (403, "1309")
    assert "expired" in error_of(refused)["message"]
