"""The coding plan's alerts (issue 22), one more kind on the existing rules and channels:
each quota window at 80 and 100% once per crossing, the renewal (or the end) within 3 days
once per period, and a plan that ended; the sweep finds idle subscribers too."""

from datetime import UTC, datetime, timedelta

import pytest

from alerts.models import AlertFiring
from alerts.services import alerts_evaluate, alerts_sweep
from notifications.models import Notification
from plans.models import Plan, PlanLimits, Subscription
from plans.quota import QuotaHold, quota_admit, quota_settle
from plans.services import plan_downgrade_schedule, plan_renew, plan_subscribe
from tests.billing.factories import funded_account
from tests.plans.test_card import add_card

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
ASK = [{"role": "user", "content": "x"}]


@pytest.fixture(autouse=True)
def fresh_state(fresh_shared_state):
    return fresh_shared_state


def subscriber(*, recharge=1_000, prompts_5h=10):
    account = funded_account(recharge_units=recharge)
    plan = Plan.objects.get(code="lite")
    current = PlanLimits.objects.filter(plan=plan).latest("effective_from")
    PlanLimits.objects.create(
        plan=plan,
        effective_from=T0 - timedelta(days=1),
        prompts_5h=prompts_5h,
        prompts_week=current.prompts_week,
        prompts_month=current.prompts_month,
        mcp_calls_month=current.mcp_calls_month,
        concurrency=current.concurrency,
    )
    subscription = plan_subscribe(account=account, plan=plan, period="month", actor=None, now=T0)
    return account, subscription


def use(account, count, at):
    for index in range(count):
        token = f"{at.isoformat()}-{index}"
        held = quota_admit(account=account, model="glm-4.7", messages=ASK, token=token, now=at)
        assert isinstance(held, QuotaHold)
        quota_settle(held, token=token, counts=True)
    return held


def fired(account, kind=AlertFiring.Kind.PLAN_QUOTA):
    return list(
        AlertFiring.objects.filter(account=account, kind=kind)
        .order_by("pk")
        .values_list("subject", "level", "cleared_at")
    )


def test_a_window_alerts_at_80_and_100_percent_once_per_crossing():
    account, _ = subscriber(prompts_5h=10)
    last = use(account, 7, T0)
    assert not last.crossed((80, 100))
    assert alerts_evaluate(account=account, now=T0) == []
    last = use(account, 1, T0)
    assert last.crossed((80, 100))  # the settlement schedules an evaluation on such a request
    assert [(f.subject, f.level) for f in alerts_evaluate(account=account, now=T0)] == [
        ("window:5h", 80)
    ]
    assert alerts_evaluate(account=account, now=T0) == []  # once
    use(account, 2, T0)
    assert [(f.subject, f.level) for f in alerts_evaluate(account=account, now=T0)] == [
        ("window:5h", 100)
    ]
    message = AlertFiring.objects.get(level=100).message
    assert "100%" in message and "10 of 10" in message and "2026-12-01 15:00" in message
    assert Notification.objects.filter(account=account, event_type="alert.plan_quota").count() == 2
    # Five hours on, the window has freed up: both clear and re-arm.
    later = T0 + timedelta(hours=5)
    alerts_evaluate(account=account, now=later)
    assert all(cleared is not None for _s, _l, cleared in fired(account))
    use(account, 8, later)
    assert [(f.level, f.sequence) for f in alerts_evaluate(account=account, now=later)] == [(80, 2)]


def test_the_renewal_is_announced_three_days_before_once_with_the_balance_it_needs():
    account, subscription = subscriber(recharge=50)  # ¥1 left after Lite's ¥49
    before = subscription.period_end - timedelta(days=3, minutes=1)
    assert not fired(account, AlertFiring.Kind.PLAN_RENEWAL)
    assert alerts_evaluate(account=account, now=before) == []
    soon = subscription.period_end - timedelta(days=2)
    [firing] = alerts_evaluate(account=account, now=soon)
    assert firing.kind == AlertFiring.Kind.PLAN_RENEWAL
    assert "renews on 2027-01-01 10:00 for ¥49.00" in firing.message
    assert "does not cover it: recharge or save a card" in firing.message
    assert alerts_evaluate(account=account, now=soon + timedelta(hours=1)) == []


def test_the_renewal_notice_names_the_saved_card_the_balance_falls_back_to():
    account, subscription = subscriber(recharge=50)
    add_card(account)
    [firing] = alerts_evaluate(account=account, now=subscription.period_end - timedelta(days=2))
    assert "your saved card Visa •••• 4242 will be charged" in firing.message


def test_a_cancelled_plan_is_announced_as_ending():
    account, subscription = subscriber()
    Subscription.objects.filter(pk=subscription.pk).update(auto_renew=False)
    [firing] = alerts_evaluate(account=account, now=subscription.period_end - timedelta(days=1))
    assert "ends on 2027-01-01 10:00: auto-renew is off" in firing.message


def test_a_failed_renewal_ends_the_plan_and_says_why():
    account, subscription = subscriber(recharge=50)
    assert (
        plan_renew(subscription_id=subscription.pk, now=subscription.period_end) == "renewal_failed"
    )
    after = subscription.period_end + timedelta(minutes=5)
    [firing] = alerts_evaluate(account=account, now=after)
    assert firing.kind == AlertFiring.Kind.PLAN_ENDED
    assert "renewal failed" in firing.message and "¥49.00" in firing.message
    assert alerts_evaluate(account=account, now=after + timedelta(hours=1)) == []


def test_the_sweep_finds_subscribers_without_usage_today():
    account, subscription = subscriber()
    sent = alerts_sweep(now=subscription.period_end - timedelta(days=1))
    assert sent == 1
    assert fired(account, AlertFiring.Kind.PLAN_RENEWAL)


def test_the_renewal_notice_names_the_scheduled_plan_and_its_price():
    # On Pro with ¥100 left: the scheduled Lite (¥49) is covered, Pro (¥149) would not be.
    account = funded_account(recharge_units=249)
    subscription = plan_subscribe(
        account=account, plan=Plan.objects.get(code="pro"), period="month", actor=None, now=T0
    )
    plan_downgrade_schedule(account=account, plan=Plan.objects.get(code="lite"), actor=None, now=T0)
    [firing] = alerts_evaluate(account=account, now=subscription.period_end - timedelta(days=2))
    assert "changes to Lite on 2027-01-01 10:00 and renews for ¥49.00" in firing.message
    assert "does not cover it" not in firing.message


def test_a_failed_renewal_names_the_price_of_the_plan_it_tried_to_buy():
    account = funded_account(recharge_units=149 + 40)  # ¥40 left: Lite costs ¥49
    subscription = plan_subscribe(
        account=account, plan=Plan.objects.get(code="pro"), period="month", actor=None, now=T0
    )
    plan_downgrade_schedule(account=account, plan=Plan.objects.get(code="lite"), actor=None, now=T0)
    assert (
        plan_renew(subscription_id=subscription.pk, now=subscription.period_end) == "renewal_failed"
    )
    [firing] = alerts_evaluate(account=account, now=subscription.period_end + timedelta(minutes=5))
    assert "neither the balance nor a saved card could pay ¥49.00" in firing.message
