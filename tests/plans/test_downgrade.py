"""A downgrade scheduled for the renewal (issue 22: "a downgrade takes effect at renewal"):
chosen now, nothing changes until the paid period ends; the renewal then buys the lower plan
(and period) at its price of that day, which is locked in from then; the windows keep their
counted use; an upgrade, a staff change or a staff end clears the schedule."""

import json
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from billing.models import LedgerEntry, Payment, Wallet
from billing.reconciliation import audit_all
from console.models import AuditEvent
from console.money import NANO_PER_UNIT
from console.roles import Role
from console.services import ServiceError
from console.shared_state import shared_state
from plans.models import Plan, PlanPrice, PlanTerm, Subscription
from plans.quota import QuotaHold, QuotaRefused, quota_admit, quota_settle
from plans.services import (
    plan_change,
    plan_downgrade_cancel,
    plan_downgrade_schedule,
    plan_end_now,
    plan_extend,
    plan_set_auto_renew,
    plan_subscribe,
    plan_upgrade,
    plan_upgrade_by_card,
    plans_renew_due,
)
from tests.billing.factories import funded_account
from tests.console.test_chinese_pages import leaks
from tests.factories import add_member
from tests.plans.test_card import add_card, confirm_pending

pytestmark = pytest.mark.django_db

UNIT = NANO_PER_UNIT
BOUGHT = datetime(2027, 3, 10, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai, the account's zone
ASK = [{"role": "user", "content": "x"}]
PAGE = reverse("plans:subscription")


@pytest.fixture(autouse=True)
def fresh_state(fresh_shared_state):
    return fresh_shared_state


def plan(code):
    return Plan.objects.get(code=code)


def subscribed(recharge_units=1_000, *, plan_code="pro", period="month", now=BOUGHT):
    account = funded_account(recharge_units=recharge_units, time_zone="Asia/Shanghai")
    subscription = plan_subscribe(
        account=account, plan=plan(plan_code), period=period, actor=None, now=now
    )
    return account, subscription


def balance(account) -> int:
    wallet = Wallet.objects.get(account=account)
    return wallet.recharge_nano + wallet.bonus_nano


def events(account, action) -> int:
    return AuditEvent.objects.filter(account=account, action=action).count()


def test_a_downgrade_is_scheduled_for_the_renewal_and_changes_nothing_until_then():
    account, subscription = subscribed()
    before = balance(account)
    at = BOUGHT + timedelta(days=3)
    plan_downgrade_schedule(account=account, plan=plan("lite"), actor=None, now=at)
    subscription.refresh_from_db()
    assert (subscription.plan.code, subscription.period, subscription.price_nano) == (
        "pro",
        "month",
        149 * UNIT,
    )
    assert (subscription.next_plan.code, subscription.next_period) == ("lite", "month")
    assert balance(account) == before
    # Pro's models and limits still serve until the renewal.
    held = quota_admit(account=account, model="glm-5", messages=ASK, token="a", now=at)
    assert isinstance(held, QuotaHold) and held.plan_code == "pro"
    # The same choice again writes nothing; another period replaces the schedule.
    plan_downgrade_schedule(account=account, plan=plan("lite"), period="month", actor=None, now=at)
    assert events(account, "plans.downgrade_schedule") == 1
    plan_downgrade_schedule(account=account, plan=plan("lite"), period="year", actor=None, now=at)
    subscription.refresh_from_db()
    assert subscription.next_period == "year"
    assert events(account, "plans.downgrade_schedule") == 2
    event = AuditEvent.objects.filter(action="plans.downgrade_schedule").latest("pk")
    assert event.metadata == {
        "from": "pro",
        "to": "lite",
        "period": "year",
        "at": subscription.period_end.isoformat(),
    }


def test_the_current_a_higher_or_an_unsold_plan_is_refused_and_changes_nothing():
    account, subscription = subscribed()
    unsold = Plan.objects.create(code="mini", name="Mini", rank=0)  # no prices at all
    at = BOUGHT + timedelta(days=1)
    refusals = [
        ({"plan": plan("pro")}, "on this plan already"),
        ({"plan": plan("pro"), "period": "year"}, "on this plan already"),
        ({"plan": plan("max")}, "upgrade"),
        ({"plan": unsold}, "not on sale"),
        ({"plan": plan("lite"), "period": "decade"}, "monthly, quarterly or yearly"),
    ]
    for arguments, message in refusals:
        with pytest.raises(ServiceError, match=message):
            plan_downgrade_schedule(account=account, actor=None, now=at, **arguments)
    # A period not on sale in the account's currency (staff sell Lite monthly in CNY only).
    usd_account = funded_account(recharge_units=1_000, currency="USD")
    plan_subscribe(account=usd_account, plan=plan("pro"), period="month", actor=None, now=BOUGHT)
    PlanPrice.objects.filter(plan=plan("lite"), currency="USD", period="year").delete()
    with pytest.raises(ServiceError, match="not on sale"):
        plan_downgrade_schedule(
            account=usd_account, plan=plan("lite"), period="year", actor=None, now=at
        )
    # Once the paid period is over the renewal is due: too late to schedule.
    with pytest.raises(ServiceError, match="no coding plan in force"):
        plan_downgrade_schedule(
            account=account, plan=plan("lite"), actor=None, now=subscription.period_end
        )
    with pytest.raises(ServiceError, match="no coding plan in force"):
        plan_downgrade_schedule(account=funded_account(), plan=plan("lite"), actor=None, now=at)
    assert not Subscription.objects.filter(next_plan__isnull=False).exists()
    assert not AuditEvent.objects.filter(action="plans.downgrade_schedule").exists()


def test_the_schedule_can_be_cancelled_and_the_plan_renews_as_it_is():
    account, subscription = subscribed()
    plan_downgrade_schedule(account=account, plan=plan("lite"), actor=None, now=BOUGHT)
    plan_downgrade_cancel(account=account, actor=None)
    subscription.refresh_from_db()
    assert (subscription.next_plan, subscription.next_period) == (None, "")
    assert events(account, "plans.downgrade_cancel") == 1
    with pytest.raises(ServiceError, match="No plan change is scheduled"):
        plan_downgrade_cancel(account=account, actor=None)
    assert plans_renew_due(now=subscription.period_end) == {"renewed": 1}
    subscription.refresh_from_db()
    assert (subscription.plan.code, subscription.price_nano) == ("pro", 149 * UNIT)


def test_the_renewal_buys_the_scheduled_plan_at_its_price_of_that_day_and_charges_once():
    account, subscription = subscribed()
    first_end = subscription.period_end
    plan_downgrade_schedule(account=account, plan=plan("lite"), actor=None, now=BOUGHT)
    # Lite costs more by the renewal: a new plan is bought at today's price, not Lite's price
    # when the subscriber first bought (that was Pro's, and stays Pro's).
    PlanPrice.objects.create(
        plan=plan("lite"),
        period="month",
        currency="CNY",
        amount_nano=59 * UNIT,
        effective_from=BOUGHT + timedelta(days=1),
    )
    before = balance(account)
    at = first_end + timedelta(minutes=3)
    assert plans_renew_due(now=at) == {"renewed": 1}
    assert plans_renew_due(now=at) == {}  # the job run twice: charged once
    subscription.refresh_from_db()
    assert (subscription.plan.code, subscription.period, subscription.price_nano) == (
        "lite",
        "month",
        59 * UNIT,
    )
    assert (subscription.next_plan, subscription.next_period) == (None, "")
    assert (subscription.period_start, subscription.period_end) == (
        first_end,
        datetime(2027, 5, 10, 4, 0, tzinfo=UTC),
    )
    assert before - balance(account) == 59 * UNIT
    renewal = PlanTerm.objects.get(subscription=subscription, kind="renewal")
    assert (renewal.plan.code, renewal.amount_nano) == ("lite", 59 * UNIT)
    assert renewal.ledger_entry.fee_nano == 59 * UNIT
    assert renewal.ledger_entry.metadata["plan"] == "lite"
    [event] = AuditEvent.objects.filter(account=account, action="plans.renew")
    assert (event.metadata["from"], event.metadata["to"]) == ("pro", "lite")
    assert event.metadata["price_nano"] == 59 * UNIT
    # From now on 59 is Lite's locked-in price: a later increase does not touch it.
    PlanPrice.objects.create(
        plan=plan("lite"),
        period="month",
        currency="CNY",
        amount_nano=69 * UNIT,
        effective_from=at + timedelta(days=1),
    )
    assert plans_renew_due(now=subscription.period_end) == {"renewed": 1}
    assert before - balance(account) == 2 * 59 * UNIT
    assert audit_all()[1] == []


def test_a_period_changed_at_renewal_keeps_the_day_the_plan_was_bought_on():
    # 31 January 01:00 in Beijing; the first renewal falls on 28 February.
    bought = datetime(2027, 1, 30, 17, 0, tzinfo=UTC)
    account, subscription = subscribed(now=bought)
    plan_downgrade_schedule(
        account=account, plan=plan("lite"), period="quarter", actor=None, now=bought
    )
    assert plans_renew_due(now=subscription.period_end) == {"renewed": 1}
    subscription.refresh_from_db()
    assert (subscription.plan.code, subscription.period) == ("lite", "quarter")
    assert subscription.price_nano == 132 * UNIT
    assert subscription.period_start == datetime(2027, 2, 27, 17, 0, tzinfo=UTC)  # 28 Feb
    assert subscription.period_end == datetime(2027, 5, 30, 17, 0, tzinfo=UTC)  # 31 May, not 28
    assert plans_renew_due(now=subscription.period_end) == {"renewed": 1}
    subscription.refresh_from_db()
    assert subscription.period_end == datetime(2027, 8, 30, 17, 0, tzinfo=UTC)  # 31 August


def test_the_windows_keep_their_counted_use_and_the_new_limits_apply_from_the_renewal():
    account, subscription = subscribed()
    plan_downgrade_schedule(account=account, plan=plan("lite"), actor=None, now=BOUGHT)
    just_before = subscription.period_end - timedelta(minutes=30)
    for index in range(3):
        held = quota_admit(
            account=account, model="glm-4.7", messages=ASK, token=f"p{index}", now=just_before
        )
        quota_settle(held, token=f"p{index}", counts=True)
    after = subscription.period_end + timedelta(minutes=1)
    plans_renew_due(now=after)
    refused = quota_admit(account=account, model="glm-5", messages=ASK, token="g5", now=after)
    assert isinstance(refused, QuotaRefused) and refused.refusal.code == "1311"  # not on Lite
    held = quota_admit(account=account, model="glm-4.7", messages=ASK, token="l", now=after)
    assert isinstance(held, QuotaHold) and held.plan_code == "lite"
    assert held.windows[0].limit == 120_000  # Lite's 120 prompts per 5 hours
    use = shared_state().quota_use(held.windows, now_ms=int(after.timestamp() * 1000))
    assert use[0].used == 4000  # Pro's three prompts still counted, and this one


def test_a_balance_that_cannot_pay_the_new_plan_ends_the_plan_as_any_failed_renewal():
    account, subscription = subscribed(recharge_units=149 + 40)  # 40 left: Lite costs 49
    plan_downgrade_schedule(account=account, plan=plan("lite"), actor=None, now=BOUGHT)
    before = balance(account)
    assert plans_renew_due(now=subscription.period_end) == {"renewal_failed": 1}
    subscription.refresh_from_db()
    assert (subscription.ended_at, subscription.end_reason) == (
        subscription.period_end,
        "renewal_failed",
    )
    assert subscription.plan.code == "pro"  # it ended as it was
    assert balance(account) == before


def test_auto_renew_off_keeps_the_schedule_but_the_plan_ends():
    account, subscription = subscribed()
    plan_downgrade_schedule(account=account, plan=plan("lite"), actor=None, now=BOUGHT)
    plan_set_auto_renew(account=account, on=False, actor=None)
    subscription.refresh_from_db()
    assert subscription.next_plan.code == "lite"
    before = balance(account)
    assert plans_renew_due(now=subscription.period_end) == {"cancelled": 1}
    assert balance(account) == before


def test_an_upgrade_clears_the_schedule():
    account, subscription = subscribed()
    plan_downgrade_schedule(account=account, plan=plan("lite"), actor=None, now=BOUGHT)
    plan_upgrade(account=account, plan=plan("max"), actor=None, now=BOUGHT + timedelta(days=1))
    subscription.refresh_from_db()
    assert (subscription.plan.code, subscription.next_plan, subscription.next_period) == (
        "max",
        None,
        "",
    )
    event = AuditEvent.objects.get(account=account, action="plans.upgrade")
    assert event.metadata["cleared_schedule"] == "lite"
    plans_renew_due(now=subscription.period_end)
    subscription.refresh_from_db()
    assert (subscription.plan.code, subscription.price_nano) == ("max", 469 * UNIT)


def test_a_staff_change_or_end_clears_the_schedule_and_an_extension_keeps_it():
    account, subscription = subscribed(plan_code="max")
    plan_downgrade_schedule(account=account, plan=plan("lite"), actor=None, now=BOUGHT)
    plan_extend(account=account, days=7, actor=None, reason="goodwill", now=BOUGHT)
    subscription.refresh_from_db()
    assert subscription.next_plan.code == "lite"  # it moves with the renewal
    plan_change(account=account, plan=plan("pro"), actor=None, reason="support", now=BOUGHT)
    subscription.refresh_from_db()
    assert (subscription.plan.code, subscription.next_plan) == ("pro", None)
    plan_downgrade_schedule(account=account, plan=plan("lite"), actor=None, now=BOUGHT)
    plan_end_now(account=account, refund=False, actor=None, reason="closed", now=BOUGHT)
    subscription.refresh_from_db()
    assert (subscription.end_reason, subscription.next_plan) == ("ended_by_staff", None)


def test_plan_show_tells_the_scheduled_change():
    account, subscription = subscribed()

    def shown():
        out = StringIO()
        call_command("plan_show", account=account.pk, json=True, stdout=out)
        return json.loads(out.getvalue())

    assert shown()["scheduled_change"] is None
    plan_downgrade_schedule(
        account=account, plan=plan("lite"), period="quarter", actor=None, now=BOUGHT
    )
    assert shown()["scheduled_change"] == {
        "plan": "lite",
        "period": "quarter",
        "price": "¥132.00",
        "at": subscription.period_end.isoformat(),
    }
    out = StringIO()
    call_command("plan_show", account=account.pk, stdout=out)
    assert "changes to lite (quarter, ¥132.00) at" in out.getvalue()


# --- The page --------------------------------------------------------------------------------


def page_subscriber(client, *, plan_code="pro", name="Acme"):
    account = funded_account(recharge_units=1_000, name=name)  # CNY, Asia/Shanghai
    client.force_login(account.memberships.get().user)
    plan_subscribe(account=account, plan=plan(plan_code), period="month", actor=None)
    return account


def test_the_page_offers_lower_plans_at_renewal_schedules_and_cancels(client):
    account = page_subscriber(client)
    page = client.get(PAGE).content.decode()
    # Lite's three periods; nothing for Pro (current) or Max (an upgrade).
    assert page.count('action="/subscription/downgrade/"') == 3
    assert "Change at renewal" in page and "Scheduled change" not in page
    response = client.post(
        reverse("plans:downgrade"), {"plan": "lite", "period": "year"}, follow=True
    )
    done = response.content.decode()
    subscription = Subscription.objects.get(account=account)
    date = timezone.localtime(subscription.period_end).strftime("%Y")
    assert "Your plan changes to Lite when it renews on" in done
    assert "Changes to Lite (Yearly) on" in done and date in done
    assert "¥411.00 per period" in done
    assert "Scheduled for your renewal" in done
    assert done.count('action="/subscription/downgrade/"') == 2  # Lite's other periods
    assert 'action="/subscription/downgrade/cancel/"' in done
    assert "An upgrade cancels this change." in done
    cancelled = client.post(reverse("plans:downgrade_cancel"), follow=True).content.decode()
    assert "The plan change is cancelled" in cancelled
    assert "Scheduled change" not in cancelled
    subscription.refresh_from_db()
    assert subscription.next_plan is None
    again = client.post(reverse("plans:downgrade_cancel"), follow=True).content.decode()
    assert "No plan change is scheduled." in again


def test_with_auto_renew_off_the_page_says_the_plan_ends_instead(client):
    account = page_subscriber(client)
    plan_downgrade_schedule(account=account, plan=plan("lite"), actor=None)
    plan_set_auto_renew(account=account, on=False, actor=None)
    page = client.get(PAGE).content.decode()
    assert "A change to Lite is scheduled, but auto-renew is off: the plan ends on" in page
    assert "Cancel the change" in page


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"plan": "lite"},
        {"period": "month"},
        {"plan": "platinum", "period": "month"},
        {"plan": "lite", "period": "decade"},
        {"plan": "<script>alert(1)</script>", "period": "month"},
        {"plan": "lite" * 1000, "period": "month"},
    ],
)
def test_bad_choices_change_nothing(client, data):
    account = page_subscriber(client)
    response = client.post(reverse("plans:downgrade"), data, follow=True)
    assert "Choose a plan and a period to change to." in response.content.decode()
    assert not Subscription.objects.filter(account=account, next_plan__isnull=False).exists()
    assert not AuditEvent.objects.filter(action="plans.downgrade_schedule").exists()


def test_the_page_refuses_the_current_and_higher_plans_with_a_message(client):
    account = page_subscriber(client)
    same = client.post(reverse("plans:downgrade"), {"plan": "pro", "period": "month"}, follow=True)
    assert "You are on this plan already." in same.content.decode()
    higher = client.post(
        reverse("plans:downgrade"), {"plan": "max", "period": "month"}, follow=True
    )
    assert "A higher plan is an upgrade" in higher.content.decode()
    assert not Subscription.objects.filter(account=account, next_plan__isnull=False).exists()


def test_a_developer_sees_the_schedule_but_cannot_change_it(client):
    account = page_subscriber(client)
    plan_downgrade_schedule(account=account, plan=plan("lite"), actor=None)
    client.force_login(add_member(account, role=Role.DEVELOPER).user)
    page = client.get(PAGE).content.decode()
    assert "Changes to Lite (Monthly) on" in page
    assert "/subscription/downgrade/" not in page
    assert client.post(reverse("plans:downgrade_cancel")).status_code == 403
    assert (
        client.post(reverse("plans:downgrade"), {"plan": "lite", "period": "year"}).status_code
        == 403
    )
    assert Subscription.objects.get(account=account).next_period == "month"


def test_the_schedule_reads_in_chinese(client):
    account = page_subscriber(client, name="演示")  # seeded data in Chinese: leaks are ours
    plan_downgrade_schedule(account=account, plan=plan("lite"), actor=None)
    for auto_renew in (True, False):
        plan_set_auto_renew(account=account, on=auto_renew, actor=None)
        page = client.get(PAGE, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
        assert leaks(page) == []
    done = client.post(
        reverse("plans:downgrade_cancel"), HTTP_ACCEPT_LANGUAGE="zh-hans", follow=True
    )
    assert leaks(done.content.decode()) == []


def test_no_ledger_entry_is_written_by_scheduling_or_cancelling(client):
    account = page_subscriber(client)
    entries = LedgerEntry.objects.filter(account=account).count()
    client.post(reverse("plans:downgrade"), {"plan": "lite", "period": "month"})
    client.post(reverse("plans:downgrade_cancel"))
    assert LedgerEntry.objects.filter(account=account).count() == entries


# --- Paid by card ----------------------------------------------------------------------------


def lapsing_pro_with_a_card(card_number="4242 4242 4242 4242"):
    """Pro bought from the balance 32 days ago with Lite scheduled, the balance empty since,
    and a saved card: the renewal falls back to the card."""
    account = funded_account(recharge_units=149, time_zone="Asia/Shanghai")
    bought = timezone.now() - timedelta(days=32)
    subscription = plan_subscribe(
        account=account, plan=plan("pro"), period="month", actor=None, now=bought
    )
    plan_downgrade_schedule(account=account, plan=plan("lite"), actor=None, now=bought)
    add_card(account, card_number)
    return account, subscription


def test_a_renewal_paid_by_card_charges_the_scheduled_plans_price_once():
    account, subscription = lapsing_pro_with_a_card()
    assert plans_renew_due() == {"renewed": 1}
    assert plans_renew_due() == {}
    payment = Payment.objects.get(account=account)
    assert payment.amount_nano == 49 * UNIT and payment.purchase["plan"] == "lite"
    subscription.refresh_from_db()
    assert (subscription.plan.code, subscription.price_nano, subscription.next_plan) == (
        "lite",
        49 * UNIT,
        None,
    )
    renewal = PlanTerm.objects.get(subscription=subscription, kind="renewal")
    assert (renewal.plan.code, renewal.ledger_entry) == ("lite", payment.ledger_entry)
    assert audit_all()[1] == []


def test_a_pending_card_renewal_applies_the_change_when_confirmed(settings):
    settings.SANDBOX_PENDING_SECONDS = 60
    account, subscription = lapsing_pro_with_a_card("4000 0000 0000 3220")
    assert plans_renew_due() == {"card_pending": 1}
    assert Payment.objects.get(account=account).amount_nano == 49 * UNIT
    confirm_pending(settings)
    subscription.refresh_from_db()
    assert (subscription.plan.code, subscription.next_plan) == ("lite", None)
    assert subscription.period_end > timezone.now()
    assert audit_all()[1] == []


def test_an_upgrade_paid_by_card_clears_the_schedule_too():
    account, subscription = subscribed(now=timezone.now())
    plan_downgrade_schedule(account=account, plan=plan("lite"), actor=None)
    plan_upgrade_by_card(account=account, plan=plan("max"), card=add_card(account), actor=None)
    subscription.refresh_from_db()
    assert (subscription.plan.code, subscription.next_plan) == ("max", None)
