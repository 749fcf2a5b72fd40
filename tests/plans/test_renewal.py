"""Renewing a coding plan (issue 22, step 3): at the period's end, from the balance at the
price locked in; a second run charges nothing; cancelled or unpaid plans end at the period's
end; cancel and resume."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from billing.models import LedgerEntry, Wallet
from billing.reconciliation import audit_all
from console.models import AuditEvent
from console.money import NANO_PER_UNIT
from console.services import ServiceError
from plans.models import Plan, PlanPrice, PlanTerm, Subscription
from plans.services import plan_renew, plan_set_auto_renew, plan_subscribe, plans_renew_due
from plans.tasks import renew_plans
from tests.billing.factories import funded_account
from tests.conftest import requires_postgres
from tests.threads import run_together

pytestmark = pytest.mark.django_db

UNIT = NANO_PER_UNIT
BOUGHT = datetime(2027, 3, 10, 4, 0, tzinfo=UTC)


def subscribed(recharge_units=100, *, plan_code="lite", period="month"):
    account = funded_account(recharge_units=recharge_units, time_zone="Asia/Shanghai")
    subscription = plan_subscribe(
        account=account,
        plan=Plan.objects.get(code=plan_code),
        period=period,
        actor=None,
        now=BOUGHT,
    )
    return account, subscription


def plan_payments(account) -> int:
    return LedgerEntry.objects.filter(account=account, kind="plan_purchase").count()


def balance(account) -> int:
    wallet = Wallet.objects.get(account=account)
    return wallet.recharge_nano + wallet.bonus_nano


def test_nothing_is_due_before_the_period_ends():
    account, subscription = subscribed()
    assert plans_renew_due(now=subscription.period_end - timedelta(seconds=1)) == {}
    assert plan_payments(account) == 1


def test_at_the_periods_end_the_plan_renews_at_its_locked_price_and_once_only():
    account, subscription = subscribed()
    first_end = subscription.period_end
    # Today's price went up meanwhile; the subscriber keeps theirs.
    PlanPrice.objects.create(
        plan=subscription.plan,
        period="month",
        currency="CNY",
        amount_nano=69 * UNIT,
        effective_from=BOUGHT + timedelta(days=1),
    )
    at = first_end + timedelta(minutes=3)
    assert plans_renew_due(now=at) == {"renewed": 1}
    assert plans_renew_due(now=at) == {}  # the job run twice: nothing more
    subscription.refresh_from_db()
    assert subscription.period_start == first_end
    assert subscription.period_end == datetime(2027, 5, 10, 4, 0, tzinfo=UTC)
    assert plan_payments(account) == 2
    assert balance(account) == 100 * UNIT - 2 * 49 * UNIT
    renewal = PlanTerm.objects.get(subscription=subscription, kind="renewal")
    assert (renewal.starts_at, renewal.ends_at, renewal.amount_nano) == (
        first_end,
        subscription.period_end,
        49 * UNIT,
    )
    assert audit_all()[1] == []


def test_the_task_renews_what_is_due():
    account, subscription = subscribed()
    now = timezone.now()
    Subscription.objects.filter(pk=subscription.pk).update(
        period_start=now - timedelta(days=31), period_end=now - timedelta(minutes=1)
    )
    assert renew_plans.apply().get() == {"renewed": 1}
    assert renew_plans.apply().get() == {}
    assert plan_payments(account) == 2


def test_a_cancelled_plan_runs_to_its_periods_end_and_then_ends_without_a_charge():
    account, subscription = subscribed()
    plan_set_auto_renew(account=account, on=False, actor=None)
    assert AuditEvent.objects.filter(action="plans.cancel", account=account).count() == 1
    before = balance(account)
    assert plans_renew_due(now=subscription.period_end - timedelta(hours=1)) == {}
    assert plans_renew_due(now=subscription.period_end + timedelta(hours=1)) == {"cancelled": 1}
    subscription.refresh_from_db()
    assert (subscription.ended_at, subscription.end_reason) == (
        subscription.period_end,
        "cancelled",
    )
    assert balance(account) == before and plan_payments(account) == 1


def test_a_resumed_plan_renews_again():
    account, subscription = subscribed()
    plan_set_auto_renew(account=account, on=False, actor=None)
    plan_set_auto_renew(account=account, on=True, actor=None)
    plan_set_auto_renew(account=account, on=True, actor=None)  # no change, no second event
    assert AuditEvent.objects.filter(action="plans.resume", account=account).count() == 1
    assert plans_renew_due(now=subscription.period_end) == {"renewed": 1}


def test_a_balance_that_cannot_pay_ends_the_plan_at_its_periods_end_and_takes_nothing():
    account, subscription = subscribed(recharge_units=60)  # 11 left after buying
    before = balance(account)
    assert plans_renew_due(now=subscription.period_end + timedelta(days=1)) == {"renewal_failed": 1}
    subscription.refresh_from_db()
    assert subscription.ended_at == subscription.period_end
    assert subscription.end_reason == "renewal_failed"
    assert balance(account) == before and plan_payments(account) == 1
    assert Wallet.objects.get(account=account).arrears_nano == 0


def test_cancel_without_a_plan_is_refused():
    account = funded_account(recharge_units=1)
    with pytest.raises(ServiceError, match="no coding plan"):
        plan_set_auto_renew(account=account, on=False, actor=None)


def test_an_ended_plan_is_not_renewed():
    account, subscription = subscribed()
    plan_set_auto_renew(account=account, on=False, actor=None)
    plans_renew_due(now=subscription.period_end)
    assert plan_renew(subscription_id=subscription.pk, now=subscription.period_end) == "not_due"
    assert plan_payments(account) == 1


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_overlapping_renewal_runs_charge_once():
    account, subscription = subscribed(recharge_units=1_000)
    at = subscription.period_end + timedelta(minutes=1)
    outcomes = []
    assert (
        run_together(
            lambda index: outcomes.append(plan_renew(subscription_id=subscription.pk, now=at)), 6
        )
        == []
    )
    assert sorted(outcomes) == ["not_due"] * 5 + ["renewed"]
    assert plan_payments(account) == 2
    assert audit_all()[1] == []


def renew_at(subscription, at):
    assert plan_renew(subscription_id=subscription.pk, now=at) == "renewed"
    subscription.refresh_from_db()
    return subscription.period_start, subscription.period_end


def test_a_plan_bought_on_the_31st_keeps_its_day_in_the_months_that_have_one():
    account = funded_account(recharge_units=1_000, time_zone="Asia/Shanghai")
    # 31 January 01:00 in Beijing: 30 January 17:00 UTC (the UTC date differs).
    bought = datetime(2027, 1, 30, 17, 0, tzinfo=UTC)
    subscription = plan_subscribe(
        account=account, plan=Plan.objects.get(code="lite"), period="month", actor=None, now=bought
    )
    assert subscription.period_end == datetime(2027, 2, 27, 17, 0, tzinfo=UTC)  # 28 Feb 01:00
    assert renew_at(subscription, subscription.period_end) == (
        datetime(2027, 2, 27, 17, 0, tzinfo=UTC),
        datetime(2027, 3, 30, 17, 0, tzinfo=UTC),  # 31 March 01:00, not 28 March
    )
    assert renew_at(subscription, subscription.period_end)[1] == datetime(
        2027, 4, 29, 17, 0, tzinfo=UTC
    )  # 30 April 01:00


def test_a_wall_clock_time_skipped_by_dst_does_not_shift_later_renewals():
    account = funded_account(recharge_units=1_000, time_zone="America/New_York")
    # 14 February 2027 02:30 EST; 14 March 02:30 does not exist (clocks jump to 03:00).
    bought = datetime(2027, 2, 14, 7, 30, tzinfo=UTC)
    subscription = plan_subscribe(
        account=account, plan=Plan.objects.get(code="lite"), period="month", actor=None, now=bought
    )
    first_end = subscription.period_end
    _start, second_end = renew_at(subscription, first_end)
    # 14 April 02:30 EDT again, not 03:30.
    assert second_end == datetime(2027, 4, 14, 6, 30, tzinfo=UTC)


def test_after_a_long_outage_of_the_job_one_renewal_covers_today_and_the_gap_is_not_charged():
    account, subscription = subscribed(recharge_units=1_000)
    # Bought 10 March; the job comes back on 25 May: April and May's first days passed unpaid.
    back = datetime(2027, 5, 25, 0, 0, tzinfo=UTC)
    assert plans_renew_due(now=back) == {"renewed": 1}
    assert plans_renew_due(now=back + timedelta(minutes=5)) == {}
    subscription.refresh_from_db()
    assert (subscription.period_start, subscription.period_end) == (
        datetime(2027, 5, 10, 4, 0, tzinfo=UTC),
        datetime(2027, 6, 10, 4, 0, tzinfo=UTC),
    )
    assert plan_payments(account) == 2


def test_one_subscription_that_fails_to_renew_does_not_stop_the_others(monkeypatch):
    from plans import services

    first_account, first = subscribed()
    second_account, second = subscribed()
    real = services.plan_renew

    def faulty(*, subscription_id, now=None):
        if subscription_id == first.pk:
            raise ValueError("injected fault")
        return real(subscription_id=subscription_id, now=now)

    monkeypatch.setattr(services, "plan_renew", faulty)
    at = first.period_end + timedelta(minutes=1)
    assert services.plans_renew_due(now=at) == {"error": 1, "renewed": 1}
    assert plan_payments(second_account) == 2 and plan_payments(first_account) == 1


def test_buying_after_a_cancelled_plan_ran_out_records_why_it_ended():
    account, subscription = subscribed(recharge_units=1_000)
    plan_set_auto_renew(account=account, on=False, actor=None)
    later = subscription.period_end + timedelta(hours=1)
    plan_subscribe(
        account=account, plan=Plan.objects.get(code="pro"), period="month", actor=None, now=later
    )
    subscription.refresh_from_db()
    assert (subscription.ended_at, subscription.end_reason) == (
        subscription.period_end,
        "cancelled",
    )
    assert AuditEvent.objects.filter(action="plans.end", account=account).count() == 1
