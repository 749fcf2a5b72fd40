"""The usage and cost API: totals equal the usage records' sums; admin-read keys or a
session; another account's data never; malformed parameters fall back with warnings."""

import itertools
from datetime import timedelta

import pytest
from django.db.models import Count, Sum
from django.utils import timezone

from billing.services import bonus_grant, recharge
from console.money import NANO_PER_UNIT
from keys.models import Scope
from keys.services import api_key_create, api_key_revoke
from projects.services import project_create
from tests.billing.traffic import mixed_traffic
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db

USAGE, COSTS = "/api/console/v1/usage", "/api/console/v1/costs"


@pytest.fixture
def busy(world):
    account = world.account_a
    recharge(account=account, amount_nano=300 * NANO_PER_UNIT, reference="fund")
    bonus_grant(account=account, amount_nano=30 * NANO_PER_UNIT, reference="gift")
    other = project_create(account=account, name="Batch", actor=None)
    default = account.projects.get(is_default=True)
    keys = [
        api_key_create(account=account, project=default, label="web", actor=None).key,
        api_key_create(account=account, project=other, label="batch", actor=None).key,
    ]
    mixed_traffic(keys, days=9)
    reader = api_key_create(
        account=account, project=default, label="reader", actor=None, scope=Scope.ADMIN_READ
    )
    return account, keys, other, reader.raw


def bearer(raw):
    return {"Authorization": f"Bearer {raw}"}


def get_all(client, url, params, headers=None):
    """Every page, following next_page."""
    buckets, params = [], dict(params)
    while True:
        response = client.get(url, params, headers=headers or {})
        assert response.status_code == 200, response.content
        page = response.json()
        buckets += page["data"]
        if not page["has_more"]:
            return buckets, page
        params["page"] = page["next_page"]


def nano(value: str) -> int:
    return int(value.replace(".", ""))


@pytest.mark.parametrize("width", ["1d", "1h"])
@pytest.mark.parametrize("group_by", ["", "model", "project_id,api_key_id"])
def test_usage_and_costs_equal_the_sums_of_the_records(client, busy, width, group_by):
    account, _keys, _other, raw = busy
    start = int((timezone.now() - timedelta(days=12)).timestamp())
    limit = 168 if width == "1h" else 31
    params = {"start_time": start, "bucket_width": width, "group_by": group_by, "limit": limit}
    records = UsageRecord.objects.filter(account=account).aggregate(
        n=Count("id"),
        i=Sum("input_tokens"),
        o=Sum("output_tokens"),
        fee=Sum("fee_nano"),
        bonus=Sum("bonus_nano"),
    )
    usage, page = get_all(client, USAGE, params, bearer(raw))
    assert page["warnings"] == []
    results = [r for bucket in usage for r in bucket["results"]]
    assert sum(r["requests"] for r in results) == records["n"]
    assert sum(r["input_tokens"] for r in results) == records["i"]
    assert sum(r["output_tokens"] for r in results) == records["o"]
    costs, _page = get_all(client, COSTS, params, bearer(raw))
    results = [r for bucket in costs for r in bucket["results"]]
    assert sum(nano(r["amount"]["value"]) for r in results) == records["fee"]
    assert sum(nano(r["bonus"]["value"]) for r in results) == records["bonus"]
    assert {r["amount"]["currency"] for r in results} == {account.currency}
    # Buckets tile the range: each starts where the one before ended.
    assert all(a["end_time"] == b["start_time"] for a, b in itertools.pairwise(usage))


def test_a_project_filter_and_grouping_split_the_totals(client, busy):
    account, _keys, other, raw = busy
    params = {
        "start_time": int((timezone.now() - timedelta(days=12)).timestamp()),
        "project_ids": str(other.pk),
        "group_by": "project_id",
        "limit": 31,
    }
    buckets, _page = get_all(client, COSTS, params, bearer(raw))
    results = [r for bucket in buckets for r in bucket["results"]]
    assert {r["project_id"] for r in results} == {other.pk}
    expected = UsageRecord.objects.filter(account=account, project=other).aggregate(
        fee=Sum("fee_nano")
    )["fee"]
    assert sum(nano(r["amount"]["value"]) for r in results) == expected


def test_a_signed_in_member_reads_their_current_account(client, world, busy):
    account, *_ = busy
    client.force_login(world.finance_a.user)
    buckets, _page = get_all(client, USAGE, {"limit": 31, "start_time": 0})
    assert sum(r["requests"] for b in buckets for r in b["results"]) == (
        UsageRecord.objects.filter(account=account).count()
    )


def test_another_account_gets_nothing_of_this_one(client, world, busy):
    _account, _keys, other, raw = busy
    client.force_login(world.owner_b)
    params = {"start_time": 0, "limit": 31, "project_ids": other.pk, "group_by": "project_id"}
    buckets, _page = get_all(client, COSTS, params)
    assert [r for b in buckets for r in b["results"]] == []
    reader_b = api_key_create(
        account=world.account_b,
        project=world.account_b.projects.get(is_default=True),
        label="b",
        actor=None,
        scope=Scope.ADMIN_READ,
    )
    client.logout()
    buckets, _page = get_all(client, USAGE, {"limit": 31, "start_time": 0}, bearer(reader_b.raw))
    assert sum(r["requests"] for b in buckets for r in b["results"]) == 0


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "1001"),
        ({"Authorization": "Basic abc"}, 401, "1001"),
        ({"Authorization": "Bearer nope"}, 401, "1002"),
    ],
)
def test_without_a_valid_key_or_session_it_refuses(client, busy, headers, status, code):
    response = client.get(USAGE, headers=headers)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_an_inference_key_or_a_revoked_key_is_refused(client, busy):
    account, keys, _other, raw = busy
    inference = api_key_create(account=account, project=keys[0].project, label="i", actor=None).raw
    response = client.get(COSTS, headers=bearer(inference))
    assert (response.status_code, response.json()["error"]["code"]) == (401, "1000")
    reader = api_key_create(
        account=account, project=keys[0].project, label="r", actor=None, scope=Scope.ADMIN_READ
    )
    api_key_revoke(key=reader.key, actor=None)
    response = client.get(COSTS, headers=bearer(reader.raw))
    assert (response.status_code, response.json()["error"]["code"]) == (401, "1004")


def test_only_get_is_allowed(client, busy):
    *_rest, raw = busy
    response = client.post(USAGE, headers=bearer(raw))
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "1210"


def test_malformed_parameters_fall_back_to_defaults_with_warnings(client, busy):
    *_rest, raw = busy
    response = client.get(
        USAGE,
        {
            "start_time": "last week",
            "end_time": "-5",
            "bucket_width": "1w",
            "group_by": "colour,model",
            "limit": "1000",
            "project_ids": "1,x",
            "fields": "all",
        },
        headers=bearer(raw),
    )
    assert response.status_code == 200
    page = response.json()
    assert page["bucket_width"] == "1d"
    assert len(page["data"]) == 7
    assert len(page["warnings"]) == 7
    assert all("model" in result for b in page["data"] for result in b["results"])
    # The default page ends with today's bucket.
    assert (
        page["data"][-1]["start_time"] <= timezone.now().timestamp() < page["data"][-1]["end_time"]
    )


def test_an_empty_account_gets_zero_buckets_not_an_error(client, world):
    client.force_login(world.owner_b)
    page = client.get(USAGE, {"bucket_width": "1h"}).json()
    assert len(page["data"]) == 24
    assert all(b["results"][0]["requests"] == 0 for b in page["data"])


@pytest.mark.parametrize(
    "params",
    [
        {"end_time": "253402300799"},
        {"start_time": "99999999999999", "bucket_width": "1h"},
        {"limit": "²"},
        {"project_ids": "²,١"},
        {"api_key_ids": "9" * 40},
        {"start_time": "-1", "end_time": "0"},
        {"page": "abc", "group_by": ",,,"},
    ],
)
def test_hostile_values_fall_back_with_warnings_and_never_fail(client, busy, params):
    *_rest, raw = busy
    for url in (USAGE, COSTS):
        response = client.get(url, params, headers=bearer(raw))
        assert response.status_code == 200, (url, params)
        assert response.json()["warnings"], params
