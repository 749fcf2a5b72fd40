"""The subscription page's chart (issue 22): prompts per hour over the last 5 hours or 7 days
and requests by model, in the account's time zone, zero-filled, from the plan's usage records
only (never pay-as-you-go, never another account's); a range switch that works with htmx and
without; an empty state; nothing for an account without a plan."""

import json
import re
import zoneinfo
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from plans.charts import plan_usage_figures
from plans.models import Plan
from plans.selectors import plan_usage_recent, usage_buckets
from plans.services import plan_subscribe
from tests.billing.factories import funded_account
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db

PAGE = reverse("plans:subscription")
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
# A fixed "now" for the selector: 14:20 in Beijing.
NOW = datetime(2026, 3, 10, 14, 20, tzinfo=SHANGHAI)


@pytest.fixture(autouse=True)
def fresh_state(fresh_shared_state):
    return fresh_shared_state


def subscriber(code="pro", **fields):
    account = funded_account(recharge_units=1_000, **fields)
    subscription = plan_subscribe(
        account=account, plan=Plan.objects.get(code=code), period="month", actor=None
    )
    return account, subscription.terms.get()


_requests = iter(range(10**6))


def record(account, term, *, at, model="glm-4.7", milli=1000, tokens=(100, 20)):
    return UsageRecord.objects.create(
        account=account,
        request_id=f"r{next(_requests)}",
        model=model,
        status=200,
        plan_term_id=term.pk if term is not None else None,
        quota_milli=milli,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        created_at=at,
    )


@pytest.fixture
def traffic():
    """Account A's plan requests at known times before NOW, and what must not count: A's
    pay-as-you-go request, A's refused plan request, and B's plan request (B's record even
    names A's term: the account decides, not the term id)."""
    account, term = subscriber()
    record(account, term, at=NOW - timedelta(minutes=10))  # 14:10
    record(account, term, at=NOW - timedelta(minutes=15), model="glm-5", milli=3000)  # 14:05
    record(account, term, at=NOW - timedelta(hours=2), milli=67)  # 12:20, a continuation
    record(account, term, at=NOW - timedelta(hours=4, minutes=59))  # 09:21, still in 5 hours
    record(account, term, at=NOW - timedelta(hours=5, minutes=1))  # 09:19, the week only
    record(account, term, at=NOW - timedelta(days=3), model="glm-4.5-air")
    record(account, term, at=NOW - timedelta(days=7, minutes=1))  # past the week
    record(account, None, at=NOW - timedelta(minutes=5), milli=0)  # pay-as-you-go
    record(account, term, at=NOW - timedelta(minutes=5), milli=0)  # refused: counted nothing
    other, other_term = subscriber()
    record(other, other_term, at=NOW - timedelta(minutes=5), model="glm-4.6")
    record(other, term, at=NOW - timedelta(minutes=5), model="glm-4.6")
    return account


def test_five_hours_by_hour_in_the_accounts_zone_zero_filled(traffic):
    usage = plan_usage_recent(account=traffic, span="5h", now=NOW)
    hours = [bucket.strftime("%H:%M") for bucket in usage.buckets]
    assert hours == ["09:00", "10:00", "11:00", "12:00", "13:00", "14:00"]
    assert all(bucket.tzinfo == SHANGHAI for bucket in usage.buckets)
    assert [c.prompts_milli for c in usage.per_bucket] == [1000, 0, 0, 67, 0, 4000]
    assert [c.requests for c in usage.per_bucket] == [1, 0, 0, 1, 0, 2]
    assert list(usage.by_model) == ["glm-4.7", "glm-5"]
    assert [c.prompts_milli for c in usage.by_model["glm-5"]] == [0, 0, 0, 0, 0, 3000]
    assert usage.total.prompts == Decimal("5.067")
    assert (usage.total.requests, usage.total.tokens) == (4, 480)
    assert [(model, c.requests, c.prompts) for model, c in usage.per_model] == [
        ("glm-4.7", 3, Decimal("2.067")),
        ("glm-5", 1, Decimal("3")),
    ]


def test_seven_days_by_hour(traffic):
    usage = plan_usage_recent(account=traffic, span="7d", now=NOW)
    assert len(usage.buckets) == 7 * 24 + 1  # 3 March 14:00 to 10 March 14:00, both partial
    assert usage.buckets[0] == datetime(2026, 3, 3, 14, tzinfo=SHANGHAI)
    assert usage.buckets[-1] == datetime(2026, 3, 10, 14, tzinfo=SHANGHAI)
    assert usage.total.prompts == Decimal("7.067")
    assert usage.total.requests == 6
    assert dict((model, c.requests) for model, c in usage.per_model) == {
        "glm-4.7": 4,
        "glm-5": 1,
        "glm-4.5-air": 1,
    }
    three_days_ago = usage.buckets.index(datetime(2026, 3, 7, 14, tzinfo=SHANGHAI))
    assert usage.by_model["glm-4.5-air"][three_days_ago].prompts_milli == 1000
    assert sum(c.prompts_milli for c in usage.by_model["glm-4.5-air"]) == 1000


def test_a_half_hour_zone_buckets_at_its_own_hours():
    account, term = subscriber(time_zone="Asia/Kolkata")  # UTC+05:30
    now = datetime(2026, 3, 10, 9, 0, tzinfo=zoneinfo.ZoneInfo("UTC"))  # 14:30 in Kolkata
    record(account, term, at=now - timedelta(minutes=20))  # 14:10 local
    record(account, term, at=now - timedelta(minutes=40))  # 13:50 local
    usage = plan_usage_recent(account=account, span="5h", now=now)
    assert [b.strftime("%H:%M") for b in usage.buckets][-2:] == ["13:00", "14:00"]
    assert [c.requests for c in usage.per_bucket][-2:] == [1, 1]


def test_a_dst_change_neither_invents_nor_skips_an_hour():
    new_york = zoneinfo.ZoneInfo("America/New_York")
    # 8 March 2026: 02:00 EST becomes 03:00 EDT.
    start = datetime(2026, 3, 8, 0, 30, tzinfo=new_york)
    end = datetime(2026, 3, 8, 4, 30, tzinfo=new_york)
    buckets = usage_buckets(start=start, end=end, granularity="hour", zone=new_york)
    assert [b.strftime("%H:%M %Z") for b in buckets] == [
        "00:00 EST",
        "01:00 EST",
        "03:00 EDT",
        "04:00 EDT",
    ]


def test_the_figures_carry_exact_prompts_and_pass_plotlys_validation(traffic):
    import plotly.graph_objects as go

    usage = plan_usage_recent(account=traffic, span="5h", now=NOW)
    prompts, models = plan_usage_figures(usage, span="5h")
    by_model = {trace["name"]: trace["y"] for trace in prompts["figure"]["data"]}
    assert by_model == {
        "glm-4.7": ["1", "0", "0", "0.067", "0", "1"],
        "glm-5": ["0", "0", "0", "0", "0", "3"],
    }
    assert prompts["figure"]["data"][0]["x"][0] == "2026-03-10 09:00"  # local, no offset
    assert models["figure"]["data"][0]["y"] == ["glm-4.7", "glm-5"]
    assert models["figure"]["data"][0]["x"] == [3, 1]
    for figure in (prompts, models):
        go.Figure(figure["figure"])  # raises ValueError on an unknown or invalid property


def test_a_model_name_is_text_in_the_figures_not_markup():
    account, term = subscriber()
    record(account, term, at=timezone.now(), model="<a href=x>m</a>")
    usage = plan_usage_recent(account=account, span="5h")
    prompts, models = plan_usage_figures(usage, span="5h")
    assert prompts["figure"]["data"][0]["name"] == "&lt;a href=x&gt;m&lt;/a&gt;"
    assert models["figure"]["data"][0]["y"] == ["&lt;a href=x&gt;m&lt;/a&gt;"]


# --- The page --------------------------------------------------------------------------------


def figure_in(html, data_id):
    found = re.search(rf'<script id="{data_id}" type="application/json">(.*?)</script>', html)
    return json.loads(found.group(1)) if found else None


def signed_in(client, account):
    client.force_login(account.memberships.get(role="owner").user)


def test_the_page_draws_the_last_5_hours_of_the_plans_prompts(client):
    account, term = subscriber()
    now = timezone.now()
    record(account, term, at=now - timedelta(minutes=3), milli=67)
    record(account, term, at=now - timedelta(minutes=4), model="glm-5", milli=3000)
    record(account, term, at=now - timedelta(days=2))  # the week only
    record(account, None, at=now - timedelta(minutes=3), model="glm-4.6")  # pay-as-you-go
    signed_in(client, account)
    html = client.get(PAGE).content.decode()
    assert 'src="/static/vendor/plotly.min.js"' in html
    assert "<script>" not in html  # nothing inline: the CSP would refuse it
    figure = figure_in(html, "chart-plan-prompts-data")
    charted = sum(Decimal(y) for trace in figure["data"] for y in trace["y"])
    assert charted == Decimal("3.067")
    assert {trace["name"] for trace in figure["data"]} == {"glm-4.7", "glm-5"}
    assert len(figure["data"][0]["x"]) == 6  # the hour 5 hours ago, and each since
    assert figure_in(html, "chart-plan-models-data")["data"][0]["x"] == [1, 1]
    assert "Prompts 3.067 · requests 2 · hours in Asia/Shanghai" in html
    assert '<td class="num">0.067</td>' in html  # the table's exact prompts
    assert "glm-4.6" not in html.split('id="plan-usage"')[1].split("Use it")[0]
    assert 'href="?range=7d"' in html and 'hx-get="?range=7d"' in html


def test_the_range_switch_with_htmx_and_without(client):
    account, term = subscriber()
    now = timezone.now()
    record(account, term, at=now - timedelta(minutes=3))
    record(account, term, at=now - timedelta(days=2), model="glm-4.5-air")
    signed_in(client, account)

    # Without JavaScript the link opens the whole page at that range.
    html = client.get(PAGE, {"range": "7d"}).content.decode()
    assert "<html" in html and "Your plan: Pro" in html
    figure = figure_in(html, "chart-plan-prompts-data")
    assert len(figure["data"][0]["x"]) == 7 * 24 + 1
    assert {trace["name"] for trace in figure["data"]} == {"glm-4.5-air", "glm-4.7"}
    assert (
        'href="?range=7d" hx-get="?range=7d" hx-target="#plan-usage" hx-push-url="true" aria-current="page"'
        in html
    )

    # With htmx only the chart region comes back.
    partial = client.get(PAGE, {"range": "7d"}, headers={"HX-Request": "true"}).content.decode()
    assert "<html" not in partial and "Your plan" not in partial
    assert figure_in(partial, "chart-plan-prompts-data") == figure
    partial = client.get(PAGE, {"range": "5h"}, headers={"HX-Request": "true"}).content.decode()
    assert {trace["name"] for trace in figure_in(partial, "chart-plan-prompts-data")["data"]} == {
        "glm-4.7"
    }

    # A range the page does not offer shows the 5 hours.
    for hostile in ("1y", "<script>", "5h" * 500, ""):
        html = client.get(PAGE, {"range": hostile}).content.decode()
        assert len(figure_in(html, "chart-plan-prompts-data")["data"][0]["x"]) == 6


def test_an_empty_range_says_so_and_draws_nothing(client):
    account, term = subscriber()
    record(account, term, at=timezone.now() - timedelta(days=2))
    record(account, None, at=timezone.now() - timedelta(minutes=1))  # pay-as-you-go
    signed_in(client, account)
    html = client.get(PAGE).content.decode()
    assert "No plan requests in the last 5 hours." in html
    assert 'data-plotly="' not in html
    html = client.get(PAGE, {"range": "7d"}).content.decode()
    assert "No plan requests in the last 7 days." not in html
    assert 'data-plotly="chart-plan-prompts-data"' in html
    UsageRecord.objects.filter(account=account, plan_term_id=term.pk).delete()
    html = client.get(PAGE, {"range": "7d"}).content.decode()
    assert "No plan requests in the last 7 days." in html


def test_without_a_plan_there_is_no_chart(client):
    account = funded_account(recharge_units=100)
    record(account, None, at=timezone.now() - timedelta(minutes=1))
    signed_in(client, account)
    html = client.get(PAGE).content.decode()
    assert "Plan requests" not in html and "No plan requests" not in html
    assert "plotly.min.js" not in html and 'data-plotly="' not in html
    partial = client.get(PAGE, {"range": "7d"}, headers={"HX-Request": "true"})
    assert partial.status_code == 200 and partial.content.decode().strip() == ""


def test_another_accounts_plan_requests_never_appear(client):
    account, term = subscriber()
    other, other_term = subscriber()
    record(account, term, at=timezone.now() - timedelta(minutes=2))
    record(other, other_term, at=timezone.now() - timedelta(minutes=2), model="glm-4.5-air")
    # Even a record naming this account's term: the record's account decides.
    record(other, term, at=timezone.now() - timedelta(minutes=2), model="glm-4.6", milli=9000)
    signed_in(client, account)
    for span in ("5h", "7d"):
        html = client.get(PAGE, {"range": span}).content.decode()
        region = html.split('id="plan-usage"')[1].split("Use it")[0]
        assert "glm-4.5-air" not in region and "glm-4.6" not in region
        assert "Prompts 1 · requests 1 ·" in region


def test_the_chart_region_is_all_chinese_in_chinese(client):
    from tests.console.test_chinese_pages import leaks

    account, term = subscriber(name="编程工作室")  # seeded data named in Chinese, as there
    record(account, term, at=timezone.now() - timedelta(minutes=2), milli=67)
    signed_in(client, account)
    for span in ("5h", "7d"):
        html = client.get(PAGE, {"range": span}, headers={"Accept-Language": "zh-hans"})
        html = html.content.decode()
        assert "每小时 Prompt 数" in html and "最近 5 小时" in html
        assert leaks(html) == []
    UsageRecord.objects.filter(account=account).delete()
    html = client.get(PAGE, headers={"Accept-Language": "zh-hans"}).content.decode()
    assert "最近 5 小时没有套餐请求。" in html
    assert leaks(html) == []
