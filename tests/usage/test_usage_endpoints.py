"""The endpoint as a usage dimension (issue 23): the usage page, its CSV and the usage API
filter and group by it, their figures equal the records' sums per endpoint, an unknown
endpoint changes nothing and says so, and another account's usage never shows."""

import csv
import io
import re
from collections import Counter
from datetime import timedelta

import pytest
from django.db.models import Count, Sum
from django.urls import reverse
from django.utils import timezone

from billing.services import recharge
from console.money import NANO_PER_UNIT
from history.services import prompt_log_write
from keys.models import ApiKey, Scope
from keys.services import api_key_create
from projects.services import project_create
from tests.billing.traffic import endpoint_one, endpoint_traffic, mixed_traffic
from usage.models import UsageDaily, UsageHourly, UsageRecord

pytestmark = pytest.mark.django_db

ENDPOINTS = ("openai", "coding", "anthropic")
USAGE = "/api/console/v1/usage"


@pytest.fixture
def busy(world):
    """Account A calls all three endpoints on the same keys and models; account B calls
    only the Anthropic-compatible one, and must never show in A's figures."""
    account = world.account_a
    recharge(account=account, amount_nano=300 * NANO_PER_UNIT, reference="fund")
    other = project_create(account=account, name="Batch", actor=None)
    keys = [
        api_key_create(
            account=account, project=account.projects.get(is_default=True), label="web", actor=None
        ).key,
        api_key_create(account=account, project=other, label="batch", actor=None).key,
    ]
    mixed_traffic(keys, days=9)
    endpoint_traffic(keys, days=9)
    stranger = api_key_create(
        account=world.account_b,
        project=world.account_b.projects.get(is_default=True),
        label="b",
        actor=None,
    ).key
    for _ in range(5):
        endpoint_one(stranger, endpoint="anthropic", requested_model="claude-opus-4-1")
    reader = api_key_create(
        account=account,
        project=account.projects.get(is_default=True),
        label="reader",
        actor=None,
        scope=Scope.ADMIN_READ,
    )
    return account, keys, reader.raw


def requests_by_endpoint(account, **filters):
    return dict(
        UsageRecord.objects.filter(account=account, **filters)
        .values_list("endpoint")
        .annotate(n=Count("id"))
        .order_by()
    )


def csv_rows(client, params):
    response = client.get(reverse("usage:csv"), params)
    assert response.status_code == 200
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def csv_requests_by_endpoint(rows):
    totals = Counter()
    for row in rows:
        totals[row["endpoint"]] += int(row["requests"])
    return dict(totals)


START = {"start": (timezone.localdate() - timedelta(days=20)).isoformat()}


@pytest.mark.parametrize("group", ["model", "project", "key", "endpoint", "none"])
def test_the_csv_has_the_endpoint_of_every_row_whatever_the_grouping(client, world, busy, group):
    account, _keys, _raw = busy
    client.force_login(world.owner_a)
    rows = csv_rows(client, {**START, "group": group})
    assert "endpoint" in rows[0]
    assert csv_requests_by_endpoint(rows) == requests_by_endpoint(account)
    assert set(requests_by_endpoint(account)) == set(ENDPOINTS)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_an_endpoint_filter_shows_only_that_endpoints_usage(client, world, busy, endpoint):
    account, _keys, _raw = busy
    client.force_login(world.developer_a.user)
    rows = csv_rows(client, {**START, "endpoint": endpoint, "group": "model"})
    assert {row["endpoint"] for row in rows} == {endpoint}
    assert csv_requests_by_endpoint(rows) == requests_by_endpoint(account, endpoint=endpoint)
    page = client.get(reverse("usage:index"), {**START, "endpoint": endpoint})
    html = page.content.decode()
    assert f'<option value="{endpoint}" selected>' in html
    requests = sum(requests_by_endpoint(account, endpoint=endpoint).values())
    assert re.search(rf'<div class="metric">{requests:,}</div>', html)
    # The export link keeps the filter.
    assert f"endpoint={endpoint}" in page.context["query"].querystring


def test_grouping_by_endpoint_charts_and_tables_each_endpoint(client, world, busy):
    account, _keys, _raw = busy
    client.force_login(world.owner_a)
    page = client.get(reverse("usage:index"), {**START, "group": "endpoint"})
    report = page.context["report"]
    labels = {group.id: group.label for group in report.groups}
    assert labels == {
        "openai": "OpenAI-compatible",
        "coding": "Coding plan (OpenAI-compatible)",
        "anthropic": "Anthropic-compatible",
    }
    assert {group: m.requests for group, m in report.by_group.items()} == requests_by_endpoint(
        account
    )
    cost_chart = page.context["figures"][0]["figure"]
    assert {trace["name"] for trace in cost_chart["data"]} == set(labels.values())
    html = page.content.decode()
    assert '<th scope="col">Endpoint</th>' in html
    assert '<th scope="row">Anthropic-compatible</th>' in html
    rows = csv_rows(client, {**START, "group": "endpoint"})
    assert "group" not in rows[0] and "endpoint" in rows[0]  # one column, not two


def test_an_endpoint_with_no_usage_shows_the_empty_state(client, world):
    key = api_key_create(
        account=world.account_a,
        project=world.account_a.projects.get(is_default=True),
        label="k",
        actor=None,
    ).key
    endpoint_one(key, endpoint="coding")
    client.force_login(world.owner_a)
    html = client.get(reverse("usage:index"), {"endpoint": "anthropic"}).content.decode()
    assert "No usage on this endpoint in this period." in html
    html = client.get(reverse("usage:index"), {"endpoint": "coding"}).content.decode()
    assert "No usage on this endpoint" not in html


@pytest.mark.parametrize(
    "value",
    ["OPENAI", "openai'--", "anthropic\x00", "é" * 500, "coding,anthropic", "0", " openai"],
)
def test_an_unknown_endpoint_is_no_filter_says_so_and_changes_nothing(client, world, busy, value):
    account, _keys, _raw = busy
    client.force_login(world.owner_a)
    before = (
        UsageRecord.objects.count(),
        list(UsageDaily.objects.order_by("pk").values_list("pk", "requests", "endpoint")),
        UsageHourly.objects.count(),
    )
    page = client.get(reverse("usage:index"), {**START, "endpoint": value})
    assert page.status_code == 200
    html = page.content.decode()
    assert "No such endpoint: showing every endpoint." in html
    assert page.context["query"].endpoint == ""
    assert page.context["report"].total.requests == sum(requests_by_endpoint(account).values())
    rows = csv_rows(client, {**START, "endpoint": value})
    assert csv_requests_by_endpoint(rows) == requests_by_endpoint(account)
    after = (
        UsageRecord.objects.count(),
        list(UsageDaily.objects.order_by("pk").values_list("pk", "requests", "endpoint")),
        UsageHourly.objects.count(),
    )
    assert after == before


def test_htmx_filter_by_endpoint_swaps_only_the_report(client, world, busy):
    account, _keys, _raw = busy
    client.force_login(world.owner_a)
    response = client.get(
        reverse("usage:index"),
        {**START, "endpoint": "coding", "group": "endpoint"},
        headers={"HX-Request": "true"},
    )
    html = response.content.decode()
    assert "<form" not in html and 'id="usage-report"' in html
    assert [group.id for group in response.context["report"].groups] == ["coding"]


def api_requests(client, raw, params):
    response = client.get(
        USAGE,
        {
            "bucket_width": "1d",
            "limit": 31,
            "start_time": int((timezone.now() - timedelta(days=20)).timestamp()),
            **params,
        },
        headers={"Authorization": f"Bearer {raw}"},
    )
    assert response.status_code == 200, response.content
    page = response.json()
    return [r for bucket in page["data"] for r in bucket["results"]], page["warnings"]


def test_the_api_groups_by_endpoint(client, busy):
    account, _keys, raw = busy
    results, warnings = api_requests(client, raw, {"group_by": "endpoint"})
    assert warnings == []
    totals = Counter()
    for result in results:
        totals[result["endpoint"]] += result["requests"]
    assert dict(totals) == requests_by_endpoint(account)
    # With the other dimensions too.
    results, _warnings = api_requests(client, raw, {"group_by": "model,endpoint"})
    assert {(r["model"], r["endpoint"]) for r in results} >= {
        ("glm-4.7", endpoint) for endpoint in ENDPOINTS
    }


def test_the_api_filters_by_endpoints(client, busy):
    account, _keys, raw = busy
    results, warnings = api_requests(client, raw, {"endpoints": "coding,anthropic"})
    assert warnings == []
    expected = requests_by_endpoint(account)
    assert sum(r["requests"] for r in results) == expected["coding"] + expected["anthropic"]
    assert all(r["endpoint"] is None for r in results)  # not grouped by it


def test_the_api_drops_an_unknown_endpoint_with_a_warning(client, busy):
    account, _keys, raw = busy
    results, warnings = api_requests(client, raw, {"endpoints": "coding,bogus'\x01"})
    assert warnings == ["endpoints must be openai, coding, anthropic: the others were ignored"]
    assert sum(r["requests"] for r in results) == requests_by_endpoint(account)["coding"]
    results, warnings = api_requests(client, raw, {"endpoints": "x" * 5000})
    assert len(warnings) == 1 and "x" * 100 not in warnings[0]
    assert sum(r["requests"] for r in results) == sum(requests_by_endpoint(account).values())


def test_another_accounts_endpoint_usage_never_shows(client, world, busy):
    """Account B's Anthropic requests are in no figure of account A's, and B sees its own
    only."""
    account, _keys, raw = busy
    results, _warnings = api_requests(client, raw, {"endpoints": "anthropic"})
    assert sum(r["requests"] for r in results) == requests_by_endpoint(account)["anthropic"]
    client.force_login(world.owner_b)
    rows = csv_rows(client, {**START, "group": "model"})
    assert csv_requests_by_endpoint(rows) == {"anthropic": 5}
    page = client.get(reverse("usage:index"), {**START, "group": "key"})
    assert [group.label for group in page.context["report"].groups] == [
        str(ApiKey.objects.get(account=world.account_b, label="b"))
    ]


def test_the_request_page_shows_the_endpoint_and_the_alias(client, world):
    account = world.account_a
    key = api_key_create(
        account=account, project=account.projects.get(is_default=True), label="k", actor=None
    ).key
    record = endpoint_one(key, endpoint="anthropic", requested_model="claude-sonnet-4-5")
    log = prompt_log_write(
        account=account,
        project=key.project,
        api_key=key,
        request_id=record.request_id,
        model=record.model,
        messages=[{"role": "user", "content": "hi"}],
        parameters={},
        response_text="hello",
        status=200,
        input_tokens=record.input_tokens,
        output_tokens=record.output_tokens,
        latency_ms=10,
        first_token_ms=None,
        created_at=record.created_at,
    )
    client.force_login(world.owner_a)
    html = client.get(
        reverse("usage:request_cost", args=[log.pk]), headers={"HX-Request": "true"}
    ).content.decode()
    assert "Anthropic-compatible" in html
    assert "claude-sonnet-4-5 → glm-4.7" in html
    plain = endpoint_one(key, endpoint="openai")
    assert plain.model_display == "glm-4.7"
    # A stranger gets the same 404 as for no such request.
    client.force_login(world.owner_b)
    assert client.get(reverse("usage:request_cost", args=[log.pk])).status_code == 404


def test_rollup_sums_per_endpoint_equal_the_records(busy):
    account, _keys, _raw = busy
    for model in (UsageDaily, UsageHourly):
        rollups = dict(
            model.objects.filter(account=account)
            .values_list("endpoint")
            .annotate(tokens=Sum("input_tokens"))
            .order_by()
        )
        records = dict(
            UsageRecord.objects.filter(account=account)
            .values_list("endpoint")
            .annotate(tokens=Sum("input_tokens"))
            .order_by()
        )
        assert rollups == records
