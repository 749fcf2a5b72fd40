"""The usage page and its CSV: totals equal the usage records' sums, whatever the grouping;
empty states; malformed filters fall back with a message; nothing of another account."""

import csv
import io
import json
import re
import zoneinfo
from datetime import datetime, time, timedelta

import pytest
from django.db.models import Count, Sum
from django.urls import reverse
from django.utils import timezone

from billing.services import bonus_grant, recharge
from console.money import NANO_PER_UNIT, decimal_string
from keys.services import api_key_create
from projects.services import project_create
from tests.billing.traffic import mixed_traffic
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db


@pytest.fixture
def busy(world):
    account = world.account_a
    recharge(account=account, amount_nano=300 * NANO_PER_UNIT, reference="fund")
    bonus_grant(account=account, amount_nano=30 * NANO_PER_UNIT, reference="gift")
    search = project_create(account=account, name='=HYPERLINK("x")', actor=None)
    default = account.projects.get(is_default=True)
    keys = [
        api_key_create(account=account, project=default, label="web", actor=None).key,
        api_key_create(account=account, project=search, label="batch", actor=None).key,
    ]
    mixed_traffic(keys, days=20)
    return account, keys, search


def record_sums(account, **filters):
    return UsageRecord.objects.filter(account=account, **filters).aggregate(
        requests=Count("id"),
        input=Sum("input_tokens"),
        output=Sum("output_tokens"),
        fee=Sum("fee_nano"),
        recharge=Sum("recharge_nano"),
        bonus=Sum("bonus_nano"),
    )


def csv_rows(client, query=""):
    response = client.get(reverse("usage:csv") + query)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def totals_of(rows):
    return {
        "requests": sum(int(r["requests"]) for r in rows),
        "input": sum(int(r["input_tokens"]) for r in rows),
        "output": sum(int(r["output_tokens"]) for r in rows),
        "fee": sum(int(r["cost"].replace(".", "")) for r in rows),
        "recharge": sum(int(r["recharge_part"].replace(".", "")) for r in rows),
        "bonus": sum(int(r["bonus_part"].replace(".", "")) for r in rows),
    }


@pytest.mark.parametrize("group", ["model", "project", "key", "none"])
@pytest.mark.parametrize("bucket", ["day", "month"])
def test_the_totals_equal_the_sums_of_the_usage_records(client, world, busy, group, bucket):
    account, _keys, _search = busy
    client.force_login(world.owner_a)
    start = (timezone.localdate() - timedelta(days=40)).isoformat()
    rows = csv_rows(client, f"?start={start}&group={group}&bucket={bucket}")
    assert totals_of(rows) == record_sums(account)
    page = client.get(reverse("usage:index"), {"start": start, "group": group, "bucket": bucket})
    html = page.content.decode()
    total_fee = record_sums(account)["fee"]
    assert decimal_string(total_fee).rstrip("0") in html.replace(",", "")


@pytest.mark.parametrize("bucket", ["day", "month"])
def test_a_range_starting_mid_month_counts_only_its_days(client, world, busy, bucket):
    account, _keys, _search = busy
    client.force_login(world.owner_a)
    zone = zoneinfo.ZoneInfo(account.time_zone)
    start = timezone.localdate(timezone=zone) - timedelta(days=5)
    rows = csv_rows(client, f"?start={start.isoformat()}&bucket={bucket}")
    since = datetime.combine(start, time.min, tzinfo=zone)
    assert totals_of(rows) == record_sums(account, created_at__gte=since)


def test_a_project_or_key_filter_shows_only_its_usage(client, world, busy):
    account, keys, search = busy
    client.force_login(world.developer_a.user)
    start = (timezone.localdate() - timedelta(days=40)).isoformat()
    rows = csv_rows(client, f"?start={start}&project={search.pk}")
    assert totals_of(rows) == record_sums(account, project=search)
    rows = csv_rows(client, f"?start={start}&key={keys[0].pk}&group=key")
    assert totals_of(rows) == record_sums(account, api_key=keys[0])
    assert {r["key"] for r in rows} == {str(keys[0])}


def test_the_charts_carry_the_same_money_as_the_records(client, world, busy):
    account, _keys, _search = busy
    client.force_login(world.finance_a.user)
    start = (timezone.localdate() - timedelta(days=40)).isoformat()
    html = client.get(reverse("usage:index"), {"start": start}).content.decode()
    data = re.search(r'<script id="chart-cost-data" type="application/json">(.*?)</script>', html)
    figure = json.loads(data.group(1))
    charted = sum(int(value.replace(".", "")) for trace in figure["data"] for value in trace["y"])
    assert charted == record_sums(account)["fee"]
    # Money ticks are plain decimals, never plotly's SI prefixes (¥0.0006 as "600µ").
    assert figure["layout"]["yaxis"]["exponentformat"] == "none"
    assert 'src="/static/vendor/plotly.min.js"' in html
    assert "<script>" not in html  # nothing inline: the CSP would refuse it


def test_a_spreadsheet_formula_in_a_project_name_stays_text_in_the_csv(client, world, busy):
    client.force_login(world.owner_a)
    rows = csv_rows(client, "?group=project&start=2000-01-01")
    assert '\'=HYPERLINK("x")' in {r["project"] for r in rows}


def test_a_new_account_sees_an_empty_state(client, world):
    client.force_login(world.owner_b)
    html = client.get(reverse("usage:index")).content.decode()
    assert "No usage in this period." in html
    assert 'data-plotly="' not in html
    assert csv_rows(client) == []


def test_malformed_or_unknown_parameters_fall_back_with_a_message(client, world, busy):
    client.force_login(world.owner_a)
    response = client.get(
        reverse("usage:index"),
        {
            "start": "yesterday",
            "end": "2026-13-45",
            "group": "colour",
            "bucket": "week",
            "utm": "1",
            "project": "abc",
            "key": "99999999999999999999999",
        },
    )
    assert response.status_code == 200
    html = response.content.decode()
    for words in (
        "Ignored unknown parameters: utm.",
        "The start date is not a date",
        "The end date is not a date",
        "Unknown grouping: grouped by model.",
        "Unknown interval: shown by day.",
        "No such project: showing every project.",
        "No such API key: showing every key.",
    ):
        assert words in html
    today = timezone.localdate(timezone=zoneinfo.ZoneInfo(world.account_a.time_zone))
    assert f'value="{today.isoformat()}"' in html
    assert f'value="{(today - timedelta(days=29)).isoformat()}"' in html


def test_a_reversed_or_too_long_range_is_corrected_with_a_message(client, world):
    client.force_login(world.owner_a)
    html = client.get(reverse("usage:index"), {"start": "2026-03-01", "end": "2026-02-01"})
    assert "swapped" in html.content.decode()
    html = client.get(reverse("usage:index"), {"start": "2010-01-01", "end": "2026-02-01"})
    assert "At most 366 days" in html.content.decode()


def test_another_accounts_project_is_not_a_filter_and_reveals_nothing(client, world, busy):
    account, _keys, search = busy
    client.force_login(world.owner_b)
    html = client.get(reverse("usage:index"), {"project": search.pk}).content.decode()
    assert "No such project: showing every project." in html
    assert "No usage in this period." in html
    assert search.name not in html


def test_htmx_gets_only_the_report(client, world, busy):
    client.force_login(world.owner_a)
    response = client.get(reverse("usage:index"), {"group": "key"}, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="usage-report">')
    assert "<html" not in html


def charted_cost(html):
    data = re.search(r'<script id="chart-cost-data" type="application/json">(.*?)</script>', html)
    figure = json.loads(data.group(1))
    return sum(int(value.replace(".", "")) for trace in figure["data"] for value in trace["y"])


def loaded_panel(client, page_url):
    """The detail page, and the usage panel it loads (the usage app serves it: htmx gets it
    on load, and the page itself links to the usage page for a browser without JavaScript)."""
    page = client.get(page_url).content.decode()
    panel_url = re.search(r'<div hx-get="([^"]+)" hx-trigger="load">', page).group(1)
    panel = client.get(panel_url, headers={"HX-Request": "true"})
    assert panel.status_code == 200
    return page, panel.content.decode()


def test_project_and_key_pages_show_their_own_usage(client, world, busy):
    account, keys, search = busy
    client.force_login(world.owner_a)
    page, html = loaded_panel(client, reverse("projects:detail", args=[search.pk]))
    assert charted_cost(html) == record_sums(account, project=search)["fee"]
    assert f"project={search.pk}" in html  # the link to the usage page keeps the filter
    assert f"project={search.pk}" in page  # and so does the page's own, without JavaScript
    page, html = loaded_panel(client, reverse("keys:detail", args=[keys[0].pk]))
    assert charted_cost(html) == record_sums(account, api_key=keys[0])["fee"]
    assert f"key={keys[0].pk}" in html
    assert f"key={keys[0].pk}" in page


@pytest.mark.parametrize("bucket", ["day", "month"])
def test_every_figure_passes_plotlys_own_validation(world, busy, bucket):
    """The figures are built as plain dicts (fast); plotly's validator still checks them."""
    import plotly.graph_objects as go

    from usage.charts import usage_figures
    from usage.selectors import UsageQuery, usage_report

    account, _keys, _search = busy
    today = timezone.localdate(timezone=zoneinfo.ZoneInfo(account.time_zone))
    query = UsageQuery(start=today - timedelta(days=60), end=today, bucket=bucket)
    for figure in usage_figures(usage_report(account=account, query=query), currency="CNY"):
        go.Figure(figure["figure"])  # raises ValueError on an unknown or invalid property


@pytest.mark.parametrize(
    "query",
    [
        {"project": "²"},
        {"key": "١٢"},
        {"project": "9" * 40},
        {"end": "9999-12-31"},
        {"end": "0001-01-01"},
        {"start": "0001-01-01", "end": "0001-01-02"},
        {"start": "\x00", "end": "2026-02-30"},
    ],
)
def test_hostile_values_fall_back_and_never_fail(client, world, busy, query):
    client.force_login(world.owner_a)
    for url in (reverse("usage:index"), reverse("usage:csv")):
        response = client.get(url, query)
        assert response.status_code == 200, (url, query)
    html = client.get(reverse("usage:index"), query).content.decode()
    assert "notice-warning" in html


def test_legend_names_are_text_not_markup(world, busy):
    from usage.charts import plotly_text, usage_figures
    from usage.selectors import UsageQuery, usage_report

    assert plotly_text('<a href="x">y</a> & z') == '&lt;a href="x"&gt;y&lt;/a&gt; &amp; z'
    account, _keys, _search = busy
    today = timezone.localdate(timezone=zoneinfo.ZoneInfo(account.time_zone))
    report = usage_report(
        account=account,
        query=UsageQuery(start=today - timedelta(days=30), end=today, group_by="project"),
    )
    figure = usage_figures(report, currency="CNY")[0]["figure"]
    assert '=HYPERLINK("x")' in {trace["name"] for trace in figure["data"]}
