"""The official openai SDK against uvicorn on the coding endpoint (issue 22): stream and
non-stream billed to the plan, a used-up window as the SDK sees it, and a Redis flush that
loses no quota (the windows are rebuilt from the usage records). PostgreSQL only: the server
process must see the test data."""

from datetime import timedelta

import openai
import pytest
from django.utils import timezone

from billing.models import LedgerEntry, Wallet
from billing.reconciliation import audit_all
from console.shared_state import shared_state
from plans.models import Plan, PlanLimits
from plans.quota import quota_status
from plans.services import plan_subscribe
from tests.billing.factories import funded_account
from tests.conftest import requires_postgres
from usage.models import UsageRecord

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def coding(uvicorn_site):
    return uvicorn_site + "/api/coding/paas/v4/"


@pytest.fixture(autouse=True)
def fresh_state(fresh_shared_state):
    return fresh_shared_state


def subscriber(key_for, *, prompts_5h=None):
    account = funded_account(recharge_units=1_000, bonus_units=100)
    plan = Plan.objects.get(code="lite")
    if prompts_5h is not None:
        current = PlanLimits.objects.filter(plan=plan).latest("effective_from")
        PlanLimits.objects.create(
            plan=plan,
            effective_from=timezone.now() - timedelta(seconds=1),
            prompts_5h=prompts_5h,
            prompts_week=current.prompts_week,
            prompts_month=current.prompts_month,
            mcp_calls_month=current.mcp_calls_month,
            concurrency=current.concurrency,
        )
    plan_subscribe(account=account, plan=plan, period="month", actor=None)
    raw, _key = key_for(account)
    return account, raw


def wallet_of(account):
    wallet = Wallet.objects.get(account=account)
    return wallet.recharge_nano, wallet.bonus_nano, wallet.arrears_nano


def test_the_sdk_stream_and_non_stream_are_billed_to_the_plan(coding, key_for):
    account, raw = subscriber(key_for)
    before, entries = wallet_of(account), LedgerEntry.objects.filter(account=account).count()
    client = openai.OpenAI(api_key=raw, base_url=coding, max_retries=0)
    reply = client.chat.completions.create(
        model="GLM-4.7", messages=[{"role": "user", "content": "写一个快速排序"}], max_tokens=40
    )
    assert reply.choices[0].message.content
    chunks = list(
        client.chat.completions.create(
            model="glm-4.5-air",
            messages=[
                {"role": "user", "content": "run the tests"},
                {"role": "assistant", "content": None, "tool_calls": []},
                {"role": "tool", "tool_call_id": "c1", "content": "3 passed"},
            ],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = next(chunk.usage for chunk in chunks if chunk.usage)
    records = {r.stream: r for r in UsageRecord.objects.filter(account=account)}
    assert (records[False].model, records[False].quota_milli) == ("glm-4.7", 1000)
    assert (records[True].model, records[True].quota_milli) == ("glm-4.5-air", 67)
    assert records[True].output_tokens == usage.completion_tokens
    assert all(r.fee_nano == 0 and r.plan_term_id for r in records.values())
    assert wallet_of(account) == before
    assert LedgerEntry.objects.filter(account=account).count() == entries
    five_hours = quota_status(account).windows[0]
    assert five_hours.used == 1067
    assert audit_all()[1] == []
    models = [model.id for model in client.models.list()]
    assert models == ["glm-4.5", "glm-4.5-air", "glm-4.6", "glm-4.7"]


def test_a_redis_flush_loses_no_quota_and_a_used_up_window_is_a_429(coding, key_for):
    account, raw = subscriber(key_for, prompts_5h=3)
    client = openai.OpenAI(api_key=raw, base_url=coding, max_retries=0)
    ask = [{"role": "user", "content": "hello"}]
    for _ in range(2):
        client.chat.completions.create(model="glm-4.7", messages=ask, max_tokens=5)
    # Redis loses everything (a flush, a restart without persistence).
    state = shared_state()
    for key in state.client.scan_iter(state.prefix + "*"):
        state.client.delete(key)
    client.chat.completions.create(model="glm-4.7", messages=ask, max_tokens=5)
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="glm-4.7", messages=ask, max_tokens=5)
    assert refused.value.body["code"] == "1308"
    assert "Your limit will reset at" in refused.value.body["message"]
    assert int(refused.value.response.headers["retry-after"]) > 4 * 3600
    assert quota_status(account).windows[0].used == 3000
