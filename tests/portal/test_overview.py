"""The overview dashboard: balances, spend against last month, burn rate and days left,
today's requests, rate-limit use, announcements for the right audience, empty state."""

import zoneinfo
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from billing.selectors import account_month_spend
from billing.services import recharge
from console import api_errors as errors
from console.models import Announcement, Tier
from console.money import NANO_PER_UNIT, format_amount
from console.shared_state import rate_window_key, shared_state
from keys.services import api_key_create
from portal import selectors
from tests.billing.traffic import refuse_one, settle_one
from usage.models import UsageRecord

pytestmark = pytest.mark.django_db


@pytest.fixture
def busy(world):
    account = world.account_a
    recharge(account=account, amount_nano=200 * NANO_PER_UNIT, reference="fund")
    key = api_key_create(
        account=account, project=account.projects.get(is_default=True), label="k", actor=None
    ).key
    now = timezone.now()
    for day in range(12):
        settle_one(key, input_tokens=3_000_000, output_tokens=100_000, at=now - timedelta(days=day))
    settle_one(key, status=502, code="1230", at=now)
    refuse_one(key, refusal=errors.FREQUENCY)
    return account, key


def test_a_new_account_sees_what_to_do_first(client, world):
    client.force_login(world.owner_b)
    html = client.get(reverse("overview")).content.decode()
    assert "Get started" in html
    assert reverse("keys:create") in html and reverse("quickstart") in html
    assert "No spend in the last 7 days." in html


def test_the_dashboard_reads_the_same_money_as_the_records(busy):
    account, _key = busy
    now = timezone.now()
    dashboard = selectors.overview_dashboard(account=account, now=now)
    zone = zoneinfo.ZoneInfo(account.time_zone)
    today = timezone.localdate(now, timezone=zone)
    records = UsageRecord.objects.filter(account=account)
    todays = [r for r in records if timezone.localdate(r.created_at, timezone=zone) == today]
    assert dashboard.today.requests == len(todays)
    assert dashboard.today.errors == 2
    assert dashboard.today.fee_nano == sum(r.fee_nano for r in todays)
    assert dashboard.month_to_date_nano == account_month_spend(account=account)
    last_week = [
        r.fee_nano
        for r in records
        if (today - timezone.localdate(r.created_at, timezone=zone)).days < 7
    ]
    assert dashboard.burn_per_day_nano == sum(last_week) // 7
    spendable = dashboard.balance.recharge_nano + dashboard.balance.bonus_nano
    assert dashboard.days_left == spendable // dashboard.burn_per_day_nano
    assert spendable > 0
    assert sum(fee for _day, fee in dashboard.spend_days) == sum(
        r.fee_nano
        for r in records
        if (today - timezone.localdate(r.created_at, timezone=zone)).days < 30
    )
    assert len(dashboard.sparkline_points.split()) == 30
    assert (dashboard.active_projects, dashboard.active_keys) == (1, 1)


def test_the_page_shows_balance_spend_and_rate_use(client, world, busy):
    account, _key = busy
    state = shared_state()
    state.delete(rate_window_key(account.pk))  # a window left by an earlier test of the same id
    state.hit_window(rate_window_key(account.pk), limit=1000, window_seconds=60)
    client.force_login(world.finance_a.user)
    html = client.get(reverse("overview")).content.decode()
    dashboard = selectors.overview_dashboard(account=account)
    assert format_amount(dashboard.month_to_date_nano, "CNY") in html
    assert format_amount(dashboard.balance.recharge_nano, "CNY") in html
    assert f"1 of {account.tier.requests_per_minute:,} requests" in html
    assert "Get started" not in html


def test_it_still_serves_when_the_rate_limit_store_is_down(client, world, monkeypatch):
    class Down:
        def get_int(self, key):
            raise ConnectionError("redis is down")

    monkeypatch.setattr("console.shared_state.shared_state", lambda: Down())
    client.force_login(world.owner_a)
    response = client.get(reverse("overview"))
    assert response.status_code == 200
    assert "Rate-limit use is unavailable right now." in response.content.decode()


def test_announcements_reach_their_audience_within_their_window(client, world):
    now = timezone.now()
    other_tier = Tier.objects.exclude(pk=world.account_a.tier_id).first()
    shown = [
        Announcement.objects.create(title="For everyone", starts_at=now - timedelta(hours=1)),
        Announcement.objects.create(
            title="For CNY",
            currency="CNY",
            starts_at=now - timedelta(days=1),
            ends_at=now + timedelta(days=1),
            level="warning",
        ),
        Announcement.objects.create(
            title="For this tier", tier=world.account_a.tier, starts_at=now - timedelta(days=2)
        ),
    ]
    hidden = [
        Announcement.objects.create(
            title="Notice not yet published", starts_at=now + timedelta(hours=1)
        ),
        Announcement.objects.create(
            title="Notice that ended",
            starts_at=now - timedelta(days=3),
            ends_at=now - timedelta(days=1),
        ),
        Announcement.objects.create(title="Notice for USD accounts", currency="USD", starts_at=now),
        Announcement.objects.create(
            title="Notice for another tier", tier=other_tier, starts_at=now
        ),
    ]
    client.force_login(world.developer_a.user)
    html = client.get(reverse("overview")).content.decode()
    for notice in shown:
        assert notice.title in html
    for notice in hidden:
        assert notice.title not in html


@pytest.mark.parametrize("persona", ["developer_a", "viewer_a"])
def test_roles_without_billing_do_not_see_the_balance(client, world, busy, persona):
    account, _key = busy
    client.force_login(world.user(persona))
    html = client.get(reverse("overview")).content.decode()
    dashboard = selectors.overview_dashboard(account=account)
    assert format_amount(dashboard.balance.recharge_nano, "CNY") not in html
    assert "of balance left" not in html
    assert "Today" in html  # usage numbers are for everyone
