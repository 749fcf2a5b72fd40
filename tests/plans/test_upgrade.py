"""Upgrading a coding plan mid-period (issue 22): the prorated difference to the nano, paid
from the balance as a plan purchase; the new quotas at once, the use already counted kept;
never to a lower plan; a balance that cannot pay changes nothing."""

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from billing.models import LedgerEntry, Wallet
from billing.reconciliation import audit_all
from console.models import AuditEvent
from console.money import NANO_PER_UNIT
from console.services import ServiceError
from plans.models import Plan, PlanTerm
from plans.quota import QuotaHold, QuotaRefused, quota_admit, quota_settle
from plans.services import plan_subscribe, plan_upgrade, upgrade_price
from tests.billing.factories import funded_account

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai, the account's zone
UNIT = NANO_PER_UNIT


@pytest.fixture(autouse=True)
def fresh_state(fresh_shared_state):
    return fresh_shared_state


def plan(code):
    return Plan.objects.get(code=code)


def balance(account):
    wallet = Wallet.objects.get(account=account)
    return wallet.recharge_nano + wallet.bonus_nano


def test_an_upgrade_charges_the_price_difference_for_the_rest_of_the_period_to_the_nano():
    account = funded_account(recharge_units=1_000, bonus_units=7)
    subscription = plan_subscribe(
        account=account, plan=plan("lite"), period="month", actor=None, now=T0
    )
    # December has 31 days; a third of a second past 10 days and 7 hours in.
    at = T0 + timedelta(days=10, hours=7, microseconds=333_333)
    total = (subscription.period_end - subscription.period_start) // timedelta(microseconds=1)
    left = (subscription.period_end - at) // timedelta(microseconds=1)
    difference = (149 - 49) * UNIT
    expected = (difference * left * 2 + total) // (2 * total)  # half up, in nano
    assert upgrade_price(subscription=subscription, plan=plan("pro"), now=at) == (
        expected,
        149 * UNIT,
    )
    before = balance(account)
    upgraded = plan_upgrade(account=account, plan=plan("pro"), actor=None, now=at)
    assert before - balance(account) == expected
    assert (upgraded.plan.code, upgraded.price_nano) == ("pro", 149 * UNIT)
    assert upgraded.period_end == subscription.period_end  # the same paid period
    term = PlanTerm.objects.get(subscription=subscription, kind="upgrade")
    assert (term.amount_nano, term.starts_at, term.ends_at) == (
        expected,
        at,
        subscription.period_end,
    )
    entry = term.ledger_entry
    assert entry.kind == LedgerEntry.Kind.PLAN_PURCHASE and entry.fee_nano == expected
    assert AuditEvent.objects.filter(action="plans.upgrade").count() == 1
    assert audit_all()[1] == []


def test_the_new_quotas_apply_at_once_and_the_use_already_counted_stays():
    account = funded_account(recharge_units=1_000)
    plan_subscribe(account=account, plan=plan("lite"), period="month", actor=None, now=T0)
    ask = [{"role": "user", "content": "x"}]
    for index in range(3):
        held = quota_admit(
            account=account, model="glm-4.7", messages=ask, token=f"a{index}", now=T0
        )
        quota_settle(held, token=f"a{index}", counts=True)
    refused = quota_admit(account=account, model="glm-5", messages=ask, token="b", now=T0)
    assert isinstance(refused, QuotaRefused) and refused.refusal.code == "1311"
    plan_upgrade(account=account, plan=plan("pro"), actor=None, now=T0 + timedelta(hours=1))
    held = quota_admit(
        account=account, model="glm-5", messages=ask, token="c", now=T0 + timedelta(hours=1)
    )
    assert isinstance(held, QuotaHold) and held.plan_code == "pro"
    assert held.windows[0].limit == 600_000  # Pro's 600 prompts per 5 hours
    from console.shared_state import shared_state

    use = shared_state().quota_use(
        held.windows, now_ms=int((T0 + timedelta(hours=1)).timestamp() * 1000)
    )
    assert use[0].used == 3000 + 3000  # Lite's three prompts kept, and GLM-5's three


def test_only_a_higher_plan_in_force_with_a_balance_that_can_pay():
    account = funded_account(recharge_units=200)
    plan_subscribe(account=account, plan=plan("pro"), period="month", actor=None, now=T0)
    for lower in ("lite", "pro"):
        with pytest.raises(ServiceError, match="higher plan"):
            plan_upgrade(account=account, plan=plan(lower), actor=None, now=T0)
    before = balance(account)
    with pytest.raises(ServiceError, match="too low"):
        plan_upgrade(account=account, plan=plan("max"), actor=None, now=T0 + timedelta(days=1))
    assert balance(account) == before
    assert not PlanTerm.objects.filter(kind="upgrade").exists()
    nobody = funded_account(recharge_units=1_000)
    with pytest.raises(ServiceError, match="no coding plan"):
        plan_upgrade(account=nobody, plan=plan("max"), actor=None, now=T0)


def test_the_page_quotes_and_makes_the_upgrade(client):
    account = funded_account(recharge_units=1_000)
    client.force_login(account.memberships.get().user)
    client.post(reverse("plans:subscribe"), {"plan": "lite", "period": "month"})
    page = client.get(reverse("plans:subscription")).content.decode()
    assert page.count('action="/subscription/upgrade/"') == 1
    assert page.count('form="plan-buy" name="plan"') == 2  # Pro and Max
    assert "Upgrade now for ¥" in page
    done = client.post(reverse("plans:upgrade"), {"plan": "max"}, follow=True).content.decode()
    assert "Upgraded to Max" in done and "Your plan: Max" in done
    assert 'action="/subscription/upgrade/"' not in done
    bad = client.post(reverse("plans:upgrade"), {"plan": "platinum"}, follow=True)
    assert "Choose a plan to upgrade to." in bad.content.decode()
    lower = client.post(reverse("plans:upgrade"), {"plan": "lite"}, follow=True)
    assert "higher plan" in lower.content.decode()
