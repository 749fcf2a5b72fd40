"""The quota API coding tools read (issue 22), in the vendor's shape: HTTP 200 with
{code, msg, success, data}; integers where clients decode integers; the key bare or Bearer."""

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from keys.models import Scope
from keys.services import api_key_create
from plans.models import McpCall, Plan
from plans.quota import epoch_ms, quota_admit, quota_settle
from plans.services import plan_subscribe
from tests.billing.factories import funded_account
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db

LIMIT = "/api/monitor/usage/quota/limit"
MODELS = "/api/monitor/usage/model-usage"
TOOLS = "/api/monitor/usage/tool-usage"


@pytest.fixture(autouse=True)
def fresh_state(fresh_shared_state):
    return fresh_shared_state


def key(account, scope=Scope.INFERENCE):
    project = account.projects.get(is_default=True)
    return api_key_create(
        account=account, project=project, label="tool", actor=None, scope=scope
    ).raw


def subscriber(code="lite"):
    account = funded_account(recharge_units=1_000)
    subscription = plan_subscribe(
        account=account, plan=Plan.objects.get(code=code), period="month", actor=None
    )
    return account, subscription


def read(path, authorization=None, **params):
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = Client().get(path, params, headers=headers)
    return response.status_code, json.loads(response.content)


def test_the_limits_in_the_vendors_shape_with_the_key_bare_or_bearer():
    account, subscription = subscriber("pro")
    now = timezone.now()
    for token in ("a", "b"):
        held = quota_admit(
            account=account,
            model="glm-5",
            messages=[{"role": "user", "content": "hi"}],
            token=token,
            now=now,
        )
        quota_settle(held, token=token, counts=True)
    McpCall.objects.create(
        account=account,
        subscription=subscription,
        term=subscription.terms.get(),
        tool="web_search",
        created_at=now,
    )
    raw = key(account)
    status, bare = read(LIMIT, raw)
    assert status == 200
    assert read(LIMIT, f"Bearer {raw}")[1] == bare
    assert (bare["code"], bare["success"], bare["msg"]) == (200, True, "Operation successful")
    assert bare["data"]["level"] == "pro"
    five_hours, week, tools = bare["data"]["limits"]
    assert five_hours == {
        "type": "TOKENS_LIMIT",
        "unit": 3,
        "number": 5,
        "usage": 600,
        "currentValue": 6,  # two GLM-5 prompts at three times the weight
        "remaining": 594,
        "percentage": 1,
        "nextResetTime": five_hours["nextResetTime"],
    }
    # The first prompt frees up five hours after its minute began.
    assert abs(five_hours["nextResetTime"] - epoch_ms(now + timedelta(hours=5))) <= 60_000
    assert (week["unit"], week["number"], week["usage"], week["currentValue"]) == (6, 1, 45000, 6)
    assert (tools["type"], tools["unit"], tools["number"]) == ("TIME_LIMIT", 5, 1)
    assert (tools["usage"], tools["currentValue"], tools["remaining"]) == (1000, 1, 999)
    assert tools["usageDetails"] == [{"modelCode": "web_search", "usage": 1}]
    assert tools["nextResetTime"] == epoch_ms(subscription.period_end)
    for limit in (five_hours, week, tools):
        assert all(isinstance(limit[name], int) for name in ("unit", "number", "percentage"))


def test_an_admin_read_key_reads_the_quota_too():
    account, _ = subscriber()
    status, body = read(LIMIT, f"Bearer {key(account, Scope.ADMIN_READ)}")
    assert (status, body["code"], body["data"]["level"]) == (200, 200, "lite")
    # Nothing used: a window starting now, 0 %.
    assert body["data"]["limits"][0]["currentValue"] == 0


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, 1001),
        ("", 1001),
        ("Bearer", 1001),
        ("Basic dXNlcjpwYXNz", 1001),
        ("Bearer sk-not-a-key", 401),
        ("not-a-key", 401),
        ("Bearer " + "x" * 10_000, 401),
        ("'; DROP TABLE console_account; --", 1001),
    ],
)
def test_a_missing_or_bad_key_is_a_failure_body_as_the_vendor_answers(authorization, code):
    status, body = read(LIMIT, authorization)
    assert status == 200
    assert (body["code"], body["success"]) == (code, False)
    assert isinstance(body["msg"], str) and "data" not in body


def test_without_a_plan_the_quota_is_a_failure_body():
    account = funded_account(recharge_units=10)
    status, body = read(LIMIT, key(account))
    assert (status, body["code"], body["success"]) == (200, 1309, False)


def test_only_get_is_answered():
    account, _ = subscriber()
    response = Client().post(LIMIT, headers={"Authorization": key(account)})
    assert response.status_code == 405
    assert json.loads(response.content)["success"] is False


def _record(account, term, *, at, model="glm-4.7", milli=1000, tokens=(100, 20), request="r"):
    UsageRecord.objects.create(
        account=account,
        request_id=request,
        model=model,
        status=200,
        plan_term_id=term.pk,
        quota_milli=milli,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        created_at=at,
    )


def test_model_usage_by_hour_with_zeros_for_quiet_hours_and_only_plan_requests():
    account, subscription = subscriber()
    term = subscription.terms.get()
    base = timezone.localtime(timezone.now(), timezone.get_fixed_timezone(480)).replace(
        hour=10, minute=0, second=0, microsecond=0
    ) - timedelta(days=1)
    _record(account, term, at=base + timedelta(minutes=5), request="a")
    _record(account, term, at=base + timedelta(minutes=50), model="glm-4.5-air", request="b")
    _record(account, term, at=base + timedelta(hours=2, minutes=1), request="c")
    # A pay-as-you-go request of the same account is not the plan's.
    UsageRecord.objects.create(
        account=account, request_id="payg", model="glm-4.7", status=200, created_at=base
    )
    start = base.strftime("%Y-%m-%d %H:%M:%S")
    end = (base + timedelta(hours=3) - timedelta(seconds=1)).strftime("%Y-%m-%d %H:%M:%S")
    status, body = read(MODELS, key(account), startTime=start, endTime=end)
    assert (status, body["code"]) == (200, 200)
    data = body["data"]
    assert data["granularity"] == "hourly"
    assert data["x_time"] == [
        (base + timedelta(hours=hour)).strftime("%Y-%m-%d %H:%M") for hour in range(3)
    ]
    assert data["modelCallCount"] == [2, 0, 1]
    assert data["tokensUsage"] == [240, 0, 120]
    assert [(m["modelName"], m["tokensUsage"]) for m in data["modelDataList"]] == [
        ("glm-4.5-air", [120, 0, 0]),
        ("glm-4.7", [120, 0, 120]),
    ]
    assert data["totalUsage"]["totalModelCallCount"] == 3
    assert data["totalUsage"]["totalTokensUsage"] == 360
    assert data["totalUsage"]["modelSummaryList"][1] == {
        "modelName": "glm-4.7",
        "sortOrder": 2,
        "totalTokens": 240,
    }


def test_a_range_past_a_week_is_by_day_and_bad_ranges_are_refused():
    account, _ = subscriber()
    raw = key(account)
    status, body = read(MODELS, raw, startTime="2026-11-01 00:00:00", endTime="2026-11-30 23:59:59")
    assert body["data"]["granularity"] == "daily" and len(body["data"]["x_time"]) == 30
    assert body["data"]["modelCallCount"] == [0] * 30
    for start, end in [
        ("2026-11-01", "2026-11-02"),
        ("2026-11-02 00:00:00", "2026-11-01 00:00:00"),
        ("2026-01-01 00:00:00", "2026-12-01 00:00:00"),
        ("<script>", "2026-12-01 00:00:00"),
    ]:
        _, refused = read(MODELS, raw, startTime=start, endTime=end)
        assert (refused["code"], refused["success"]) == (1214, False)


def test_tool_usage_counts_the_accounts_mcp_calls_only():
    account, subscription = subscriber()
    other, other_subscription = subscriber()
    now = timezone.now()
    for owner, sub in (
        (account, subscription),
        (account, subscription),
        (other, other_subscription),
    ):
        McpCall.objects.create(
            account=owner, subscription=sub, term=sub.terms.get(), tool="web_search", created_at=now
        )
    _, body = read(TOOLS, key(account))
    total = body["data"]["totalUsage"]
    assert (total["totalNetworkSearchCount"], total["totalSearchMcpCount"]) == (2, 2)
    assert total["toolDetails"] == [{"modelName": "web_search", "totalUsageCount": 2}]
    assert sum(body["data"]["networkSearchCount"]) == 2


def test_plan_show_prints_the_plan_and_each_quota_as_json():
    from io import StringIO

    from django.core.management import call_command

    account, subscription = subscriber()
    now = timezone.now()
    tool = [{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}]
    held = quota_admit(account=account, model="glm-4.7", messages=tool, token="t", now=now)
    quota_settle(held, token="t", counts=True)
    out = StringIO()
    call_command("plan_show", account=account.pk, json=True, stdout=out)
    shown = json.loads(out.getvalue())
    assert (shown["plan"], shown["period"], shown["auto_renew"]) == ("lite", "month", True)
    assert shown["period_end"] == subscription.period_end.isoformat()
    assert [(q["window"], q["used"], q["limit"]) for q in shown["quotas"]] == [
        ("5h", "0.067", 120),
        ("week", "0.067", 9000),
        ("month", "0.067", 18000),
        ("mcp", "0", 100),
    ]
    assert shown["quotas"][3]["next_reset"] == subscription.period_end.isoformat()
    none = funded_account(recharge_units=1)
    out = StringIO()
    call_command("plan_show", account=none.pk, json=True, stdout=out)
    assert json.loads(out.getvalue()) == {"account": none.pk, "plan": None}
