"""Paying for a coding plan by card (issue 22): a card payment for the plan through the
provider flow, not a recharge (no promotion bonus, no tier promotion, the wallet untouched);
the plan starts when the payment succeeds, also when a pending one is confirmed later;
renewal falls back to the saved card when the balance cannot pay, once per period; a staff
refund of a card-paid plan goes back to the card."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from billing.models import LedgerEntry, Payment, Promotion, Wallet
from billing.payments import payment_method_add, payments_sweep_pending
from billing.reconciliation import audit_all
from console.models import Tier
from console.money import NANO_PER_UNIT
from console.services import ServiceError
from plans.models import Plan, PlanTerm, Subscription
from plans.selectors import subscription_current
from plans.services import (
    plan_end_now,
    plan_renew,
    plan_subscribe,
    plan_subscribe_by_card,
    plan_upgrade_by_card,
    plans_renew_due,
)
from tests.billing.factories import funded_account
from tests.conftest import requires_postgres
from tests.threads import run_together

pytestmark = pytest.mark.django_db

UNIT = NANO_PER_UNIT
VISA = "4242 4242 4242 4242"
DECLINE = "4000 0000 0000 0002"
PENDING = "4000 0000 0000 3220"
LITE_MONTH = 49 * UNIT  # CNY


def add_card(account, number=VISA):
    return payment_method_add(
        account=account,
        number=number,
        exp_month=12,
        exp_year=timezone.now().year + 2,
        cvc="123",
        actor=None,
    )


def wallet(account) -> tuple[int, int, int]:
    row = Wallet.objects.get(account=account)
    return row.recharge_nano, row.bonus_nano, row.arrears_nano


def buy(account, card, plan="lite", period="month"):
    return plan_subscribe_by_card(
        account=account, plan=Plan.objects.get(code=plan), period=period, card=card, actor=None
    )


def confirm_pending(settings) -> dict:
    """The provider decides the pending payments, and the sweep (which leaves the young
    ones to their own confirmation task) settles them."""
    settings.SANDBOX_PENDING_SECONDS = 0
    Payment.objects.filter(status="pending").update(
        created_at=timezone.now() - timedelta(minutes=5)
    )
    return payments_sweep_pending()


# --- Buying ---------------------------------------------------------------------------------


def test_a_plan_bought_by_card_starts_at_once_and_leaves_the_wallet_alone():
    account = funded_account(recharge_units=10, bonus_units=5)
    # A recharge promotion and a tier a payment of this size would reach: neither applies.
    Promotion.objects.create(
        name="Double",
        currency="CNY",
        min_amount_nano=UNIT,
        bonus_basis_points=5_000,
        starts_at=timezone.now() - timedelta(days=1),
        ends_at=timezone.now() + timedelta(days=1),
    )
    Tier.objects.filter(rank__gt=account.tier.rank).update(promotion_threshold_cny_nano=UNIT)
    tier = account.tier

    payment = buy(account, add_card(account))

    assert payment.status == Payment.Status.SUCCEEDED and not payment.failure_message
    assert (payment.purpose, payment.amount_nano, payment.bonus_nano) == ("plan", LITE_MONTH, 0)
    assert payment.promotion is None
    subscription = subscription_current(account=account)
    assert subscription.plan.code == "lite" and subscription.price_nano == LITE_MONTH
    entry = payment.ledger_entry
    assert entry.kind == LedgerEntry.Kind.PLAN_PURCHASE
    assert (entry.recharge_delta_nano, entry.bonus_delta_nano, entry.arrears_delta_nano) == (
        0,
        0,
        0,
    )
    assert entry.fee_nano == LITE_MONTH
    assert entry.metadata["method"] == "card" and entry.metadata["payment"] == payment.reference
    assert subscription.terms.get().ledger_entry == entry
    assert wallet(account) == (10 * UNIT, 5 * UNIT, 0)
    assert not LedgerEntry.objects.filter(account=account, reference=payment.reference).exists()
    account.refresh_from_db()
    assert account.tier == tier
    assert audit_all()[1] == []


def test_a_declined_card_starts_nothing():
    account = funded_account()
    payment = buy(account, add_card(account, DECLINE))
    assert payment.status == Payment.Status.DECLINED and payment.failure_message
    assert payment.ledger_entry is None
    assert subscription_current(account=account) is None
    assert not LedgerEntry.objects.filter(account=account).exists()


def test_a_pending_card_payment_starts_the_plan_when_it_is_confirmed(settings):
    settings.SANDBOX_PENDING_SECONDS = 60
    account = funded_account()
    payment = buy(account, add_card(account, PENDING), plan="pro", period="quarter")
    assert payment.status == Payment.Status.PENDING
    assert subscription_current(account=account) is None
    assert confirm_pending(settings) == {"settled": 1, "expired": 0}
    payment.refresh_from_db()
    subscription = subscription_current(account=account)
    assert (subscription.plan.code, subscription.period) == ("pro", "quarter")
    assert payment.ledger_entry.metadata["subscription"] == subscription.pk
    assert payments_sweep_pending() == {"settled": 0, "expired": 0}
    assert Subscription.objects.filter(account=account).count() == 1
    assert audit_all()[1] == []


def test_a_pending_payment_for_a_plan_that_can_no_longer_start_goes_to_the_balance(settings):
    settings.SANDBOX_PENDING_SECONDS = 60
    account = funded_account(recharge_units=200)
    payment = buy(account, add_card(account, PENDING))
    # Meanwhile the account bought a plan from its balance.
    plan_subscribe(account=account, plan=Plan.objects.get(code="pro"), period="month", actor=None)
    confirm_pending(settings)
    payment.refresh_from_db()
    # The money was taken: it is credited, as a recharge without bonus, and the payment says so.
    assert payment.status == Payment.Status.SUCCEEDED
    assert payment.ledger_entry.kind == LedgerEntry.Kind.RECHARGE
    assert payment.ledger_entry.recharge_delta_nano == LITE_MONTH
    assert "added to your balance" in payment.failure_message
    assert wallet(account) == ((200 - 149) * UNIT + LITE_MONTH, 0, 0)
    assert subscription_current(account=account).plan.code == "pro"
    assert Subscription.objects.filter(account=account).count() == 1
    assert audit_all()[1] == []


def test_refusals_come_before_any_charge():
    account = funded_account(recharge_units=100)
    card = add_card(account)
    plan_subscribe(account=account, plan=Plan.objects.get(code="lite"), period="month", actor=None)
    with pytest.raises(ServiceError, match="already has a coding plan"):
        buy(account, card, plan="max")
    other = funded_account()
    with pytest.raises(ServiceError, match="saved cards"):
        buy(other, card)
    with pytest.raises(ServiceError, match="monthly, quarterly or yearly"):
        buy(other, add_card(other), period="week")
    assert not Payment.objects.exists()


def test_the_command_buys_with_the_default_card():
    account = funded_account()
    with pytest.raises(CommandError, match="no saved card"):
        call_command("plan_subscribe", account=account.pk, plan="lite", period="year", pay="card")
    add_card(account)
    out = StringIO()
    call_command(
        "plan_subscribe", account=account.pk, plan="lite", period="year", pay="card", stdout=out
    )
    assert "paid by card" in out.getvalue()
    assert subscription_current(account=account).period == "year"
    assert wallet(account) == (0, 0, 0)


# --- Renewal --------------------------------------------------------------------------------


def lapsing(recharge_units=49, card_number=VISA):
    """A monthly Lite plan bought from the balance whose period ended a day ago, with the
    balance then emptied to `recharge_units - 49` and a saved card."""
    account = funded_account(recharge_units=recharge_units, time_zone="Asia/Shanghai")
    subscription = plan_subscribe(
        account=account,
        plan=Plan.objects.get(code="lite"),
        period="month",
        actor=None,
        now=timezone.now() - timedelta(days=32),
    )
    card = add_card(account, card_number) if card_number else None
    return account, subscription, card


def test_a_renewal_the_balance_cannot_pay_is_charged_to_the_saved_card_once():
    account, subscription, _card = lapsing()
    old_end = subscription.period_end
    assert plans_renew_due() == {"renewed": 1}
    assert plans_renew_due() == {}  # run twice: nothing more
    subscription.refresh_from_db()
    assert subscription.period_start == old_end and subscription.period_end > timezone.now()
    renewal = PlanTerm.objects.get(subscription=subscription, kind="renewal")
    payment = Payment.objects.get(account=account)
    assert payment.purpose == "plan" and payment.amount_nano == LITE_MONTH
    assert renewal.ledger_entry == payment.ledger_entry
    assert renewal.ledger_entry.metadata["method"] == "card"
    assert wallet(account) == (0, 0, 0)
    assert audit_all()[1] == []


def test_the_balance_pays_a_renewal_before_the_card():
    account, subscription, _card = lapsing(recharge_units=98)
    assert plan_renew(subscription_id=subscription.pk) == "renewed"
    assert not Payment.objects.filter(account=account).exists()
    assert wallet(account) == (0, 0, 0)


def test_a_declined_renewal_card_ends_the_plan_and_is_not_tried_again():
    account, subscription, _card = lapsing(card_number=DECLINE)
    assert plan_renew(subscription_id=subscription.pk) == "renewal_failed"
    subscription.refresh_from_db()
    assert subscription.end_reason == "renewal_failed"
    assert subscription.ended_at == subscription.period_end
    assert plans_renew_due() == {}
    assert Payment.objects.filter(account=account).count() == 1
    assert not PlanTerm.objects.filter(subscription=subscription, kind="renewal").exists()


def test_without_a_card_or_balance_the_plan_ends():
    _account, subscription, _card = lapsing(card_number=None)
    assert plan_renew(subscription_id=subscription.pk) == "renewal_failed"


def test_a_pending_renewal_payment_waits_then_renews(settings):
    settings.SANDBOX_PENDING_SECONDS = 60
    account, subscription, _card = lapsing(card_number=PENDING)
    assert plan_renew(subscription_id=subscription.pk) == "card_pending"
    assert plan_renew(subscription_id=subscription.pk) == "card_pending"  # no second charge
    assert Payment.objects.filter(account=account).count() == 1
    confirm_pending(settings)
    subscription.refresh_from_db()
    assert subscription.period_end > timezone.now() and subscription.ended_at is None
    assert plan_renew(subscription_id=subscription.pk) == "not_due"
    assert PlanTerm.objects.filter(subscription=subscription, kind="renewal").count() == 1
    assert audit_all()[1] == []


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_overlapping_renewal_runs_charge_the_card_once():
    account, subscription, _card = lapsing()
    outcomes = []
    assert (
        run_together(lambda index: outcomes.append(plan_renew(subscription_id=subscription.pk)), 6)
        == []
    )
    assert outcomes.count("renewed") == 1
    assert set(outcomes) <= {"renewed", "not_due", "card_pending"}
    assert Payment.objects.filter(account=account).count() == 1
    assert PlanTerm.objects.filter(subscription=subscription, kind="renewal").count() == 1
    assert audit_all()[1] == []


# --- Staff refund ---------------------------------------------------------------------------


def test_a_staff_refund_of_a_card_paid_plan_goes_back_to_the_card():
    account = funded_account(recharge_units=3)
    payment = buy(account, add_card(account), period="year")
    refunded = plan_end_now(account=account, refund=True, actor=None, reason="goodwill")
    assert 0 < refunded <= payment.amount_nano
    entry = LedgerEntry.objects.get(account=account, kind=LedgerEntry.Kind.PLAN_REFUND)
    assert (entry.recharge_delta_nano, entry.bonus_delta_nano, entry.arrears_delta_nano) == (
        0,
        0,
        0,
    )
    assert entry.metadata["returned_nano"] == refunded
    assert entry.metadata["method"] == "card" and entry.metadata["payment"] == payment.reference
    assert wallet(account) == (3 * UNIT, 0, 0)
    assert audit_all()[1] == []


# --- Upgrade --------------------------------------------------------------------------------


def test_an_upgrade_paid_by_card_applies_at_once_at_the_quoted_difference():
    account = funded_account()
    buy(account, add_card(account))
    payment = plan_upgrade_by_card(
        account=account, plan=Plan.objects.get(code="pro"), card=add_card(account), actor=None
    )
    assert payment.status == Payment.Status.SUCCEEDED and not payment.failure_message
    # Bought a moment ago: nearly the whole difference between Pro and Lite.
    assert (149 - 49) * UNIT - UNIT < payment.amount_nano <= (149 - 49) * UNIT
    subscription = subscription_current(account=account)
    assert subscription.plan.code == "pro" and subscription.price_nano == 149 * UNIT
    upgrade = PlanTerm.objects.get(subscription=subscription, kind="upgrade")
    assert upgrade.ledger_entry == payment.ledger_entry
    assert upgrade.amount_nano == payment.amount_nano
    assert wallet(account) == (0, 0, 0)
    assert audit_all()[1] == []


def test_a_pending_upgrade_payment_for_a_plan_changed_meanwhile_goes_to_the_balance(settings):
    settings.SANDBOX_PENDING_SECONDS = 60
    account = funded_account()
    buy(account, add_card(account))
    payment = plan_upgrade_by_card(
        account=account,
        plan=Plan.objects.get(code="max"),
        card=add_card(account, PENDING),
        actor=None,
    )
    assert payment.is_pending
    plan_end_now(account=account, refund=False, actor=None, reason="test")
    confirm_pending(settings)
    payment.refresh_from_db()
    assert payment.ledger_entry.kind == LedgerEntry.Kind.RECHARGE
    assert wallet(account) == (payment.amount_nano, 0, 0)
    assert not PlanTerm.objects.filter(kind="upgrade").exists()
    assert audit_all()[1] == []
