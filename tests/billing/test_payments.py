"""Recharges through the sandbox provider: credited exactly once, declines credit nothing,
pending payments settle through the task or the sweep, promotions, arrears, bank transfers,
staff top-ups and tier promotion."""

import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from billing.models import LedgerEntry, Payment, PaymentMethod, Promotion, Wallet
from billing.payments import (
    payment_cancel,
    payment_confirm_bank_transfer,
    payment_method_add,
    payment_method_remove,
    payment_method_set_default,
    payment_record_manual,
    payment_settle,
    payment_start_bank_transfer,
    payment_start_card,
    payments_sweep_pending,
    promotion_for,
)
from billing.providers import SUCCEEDED, ChargeOutcome
from console.models import AuditEvent, Tier
from console.money import NANO_PER_UNIT
from console.services import ServiceError
from gateway.settlement import charge_usage
from tests.billing.factories import funded_account
from tests.conftest import requires_postgres
from tests.factories import make_user
from tests.threads import run_together
from tests.workers import celery_worker

pytestmark = pytest.mark.django_db

UNIT = NANO_PER_UNIT
VISA = "4242 4242 4242 4242"
DECLINE = "4000 0000 0000 0002"
NO_FUNDS = "4000 0000 0000 9995"
PENDING = "4000 0000 0000 3220"


def add_card(account, number=VISA, **fields):
    return payment_method_add(
        account=account,
        number=number,
        exp_month=12,
        exp_year=timezone.now().year + 2,
        cvc="123",
        actor=None,
        **fields,
    )


def balances(account):
    wallet = Wallet.objects.get(account=account)
    return wallet.recharge_nano, wallet.bonus_nano, wallet.arrears_nano


def recharge_entries(account):
    return LedgerEntry.objects.filter(account=account, kind=LedgerEntry.Kind.RECHARGE)


# --- Cards ----------------------------------------------------------------------------------


def test_a_saved_card_keeps_brand_and_last_4_but_never_the_number():
    account = funded_account()
    card = add_card(account)
    assert (card.brand, card.last4, card.is_default) == ("Visa", "4242", True)
    assert "4242424242424242" not in card.token
    stored = " ".join(
        str(value) for value in PaymentMethod.objects.values().get(pk=card.pk).values()
    )
    assert "424242424242" not in stored


@pytest.mark.parametrize(
    ("number", "month", "year_offset", "cvc", "message"),
    [
        ("4242 4242 4242 4241", 12, 2, "123", "not valid"),  # Luhn fails
        ("4111 1111 1111 1111", 12, 2, "123", "test cards only"),  # a real-looking card
        ("４２４２４２４２４２４２４２４２", 12, 2, "123", "12 to 19 digits"),  # full-width
        (VISA, 13, 2, "123", "between 1 and 12"),
        (VISA, 1, -1, "123", "expired"),
        (VISA, 12, 2, "12", "3 or 4 digits"),
        ("", 12, 2, "123", "12 to 19 digits"),
    ],
)
def test_bad_cards_are_refused_with_a_reason_and_nothing_saved(
    number, month, year_offset, cvc, message
):
    account = funded_account()
    with pytest.raises(ServiceError, match=message):
        payment_method_add(
            account=account,
            number=number,
            exp_month=month,
            exp_year=timezone.now().year + year_offset,
            cvc=cvc,
            actor=None,
        )
    assert not PaymentMethod.objects.filter(account=account).exists()


def test_one_default_card_and_removing_it_promotes_the_newest_other():
    account = funded_account()
    first = add_card(account)
    second = add_card(account, number="5555 5555 5555 4444")
    assert PaymentMethod.objects.get(pk=first.pk).is_default
    payment_method_set_default(method=second, actor=None)
    assert list(PaymentMethod.objects.filter(is_default=True)) == [second]
    payment_method_remove(method=second, actor=None)
    assert list(PaymentMethod.objects.filter(is_default=True, removed_at__isnull=True)) == [first]
    assert AuditEvent.objects.filter(action="billing.payment_method_remove").count() == 1


# --- Card payments --------------------------------------------------------------------------


def test_a_successful_card_payment_credits_the_recharge_balance():
    account = funded_account()
    payment = payment_start_card(
        account=account, amount_nano=100 * UNIT, payment_method=add_card(account), actor=None
    )
    assert payment.status == Payment.Status.SUCCEEDED
    assert balances(account) == (100 * UNIT, 0, 0)
    assert payment.ledger_entry.reference == payment.reference
    assert payment.ledger_entry.metadata["method"] == "card"


def test_a_confirmation_that_arrives_twice_credits_once():
    account = funded_account()
    payment = payment_start_card(
        account=account, amount_nano=100 * UNIT, payment_method=add_card(account), actor=None
    )
    again = payment_settle(
        payment_id=payment.pk, outcome=ChargeOutcome(SUCCEEDED, payment.provider_reference)
    )
    assert again.status == Payment.Status.SUCCEEDED
    assert recharge_entries(account).count() == 1
    assert balances(account) == (100 * UNIT, 0, 0)


@pytest.mark.parametrize(("number", "reason"), [(DECLINE, "declined"), (NO_FUNDS, "insufficient")])
def test_a_declined_payment_credits_nothing(number, reason):
    account = funded_account()
    payment = payment_start_card(
        account=account,
        amount_nano=100 * UNIT,
        payment_method=add_card(account, number),
        actor=None,
    )
    assert payment.status == Payment.Status.DECLINED
    assert reason in payment.failure_message
    assert balances(account) == (0, 0, 0)
    assert not recharge_entries(account).exists()
    # A success arriving after the decline does not turn it into money either.
    payment_settle(payment_id=payment.pk, outcome=ChargeOutcome(SUCCEEDED, "late"))
    assert balances(account) == (0, 0, 0)


@pytest.mark.parametrize("amount", [0, -UNIT, 9 * UNIT, 1_000_001 * UNIT])
def test_amounts_outside_the_limits_are_refused_and_nothing_is_recorded(amount):
    account = funded_account()
    card = add_card(account)
    with pytest.raises(ServiceError):
        payment_start_card(account=account, amount_nano=amount, payment_method=card, actor=None)
    assert not Payment.objects.exists()


def test_another_accounts_card_cannot_pay():
    account, other = funded_account(), funded_account()
    with pytest.raises(ServiceError):
        payment_start_card(
            account=account, amount_nano=100 * UNIT, payment_method=add_card(other), actor=None
        )
    assert not Payment.objects.exists()


def test_a_recharge_repays_arrears_first():
    account = funded_account(recharge_units=1)
    charge_usage(
        account=account,
        model="glm-5",
        input_tokens=1_000_000,
        output_tokens=0,
        request_id="big",
        project=account.projects.get(),
    )
    assert balances(account) == (0, 0, 17 * UNIT)  # ¥18 fee against ¥1
    payment_start_card(
        account=account, amount_nano=100 * UNIT, payment_method=add_card(account), actor=None
    )
    assert balances(account) == (83 * UNIT, 0, 0)


# --- Promotions -----------------------------------------------------------------------------


def test_promotions_grant_bonus_by_threshold():
    account = funded_account()
    card = add_card(account)
    assert promotion_for(currency="CNY", amount_nano=999 * UNIT) is None
    small = payment_start_card(
        account=account, amount_nano=1_000 * UNIT, payment_method=card, actor=None
    )
    large = payment_start_card(
        account=account, amount_nano=5_000 * UNIT, payment_method=card, actor=None
    )
    assert (small.bonus_nano, large.bonus_nano) == (50 * UNIT, 500 * UNIT)
    assert balances(account) == (6_000 * UNIT, 550 * UNIT, 0)


def test_the_bonus_promised_when_the_payment_started_is_the_one_granted(settings):
    settings.SANDBOX_PENDING_SECONDS = 0
    account = funded_account()
    payment = payment_start_card(
        account=account,
        amount_nano=1_000 * UNIT,
        payment_method=add_card(account, PENDING),
        actor=None,
    )
    assert payment.status == Payment.Status.PENDING and payment.bonus_nano == 50 * UNIT
    Promotion.objects.update(active=False)  # staff end the promotion meanwhile
    payment.created_at -= timedelta(minutes=1)
    payment.save(update_fields=["created_at"])
    assert payments_sweep_pending() == {"settled": 1, "expired": 0}
    assert balances(account) == (1_000 * UNIT, 50 * UNIT, 0)


# --- Pending payments -----------------------------------------------------------------------


def test_a_pending_payment_waits_then_the_sweep_settles_it(settings):
    settings.SANDBOX_PENDING_SECONDS = 60
    account = funded_account()
    payment = payment_start_card(
        account=account,
        amount_nano=50 * UNIT,
        payment_method=add_card(account, PENDING),
        actor=None,
    )
    assert payment.status == Payment.Status.PENDING
    Payment.objects.filter(pk=payment.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    # The provider has not decided yet: the sweep leaves it pending.
    assert payments_sweep_pending() == {"settled": 0, "expired": 0}
    settings.SANDBOX_PENDING_SECONDS = 0
    assert payments_sweep_pending() == {"settled": 1, "expired": 0}
    assert payments_sweep_pending() == {"settled": 0, "expired": 0}
    assert balances(account) == (50 * UNIT, 0, 0)
    assert recharge_entries(account).count() == 1


def test_a_payment_whose_provider_answer_was_lost_is_declined_by_the_sweep():
    account = funded_account()
    lost = Payment.objects.create(
        account=account,
        method=Payment.Method.CARD,
        provider="sandbox",
        reference="pay_lost",
        amount_nano=20 * UNIT,
        currency="CNY",
        payment_method=add_card(account),
        created_at=timezone.now() - timedelta(hours=1),
    )
    payments_sweep_pending()
    lost.refresh_from_db()
    assert lost.status == Payment.Status.DECLINED
    assert balances(account) == (0, 0, 0)


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_confirmations_of_one_payment_credit_once(settings):
    settings.SANDBOX_PENDING_SECONDS = 0
    account = funded_account()
    payment = payment_start_card(
        account=account,
        amount_nano=70 * UNIT,
        payment_method=add_card(account, PENDING),
        actor=None,
    )

    def confirm(_index):
        payment_settle(
            payment_id=payment.pk, outcome=ChargeOutcome(SUCCEEDED, payment.provider_reference)
        )

    assert run_together(confirm, 8) == []
    assert recharge_entries(account).count() == 1
    assert balances(account) == (70 * UNIT, 0, 0)


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_settles_a_pending_payment_through_the_task(settings, redis_client):
    settings.SANDBOX_PENDING_SECONDS = 1
    account = funded_account()
    card = add_card(account, PENDING)
    with celery_worker(SANDBOX_PENDING_SECONDS=1) as output:
        payment = payment_start_card(
            account=account, amount_nano=30 * UNIT, payment_method=card, actor=None
        )
        assert payment.status == Payment.Status.PENDING
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            payment.refresh_from_db()
            if not payment.is_pending:
                break
            time.sleep(0.2)
    assert payment.status == Payment.Status.SUCCEEDED, output
    assert f"confirm_payment payment={payment.pk} status=succeeded" in output[0]
    assert balances(account) == (30 * UNIT, 0, 0)


# --- Bank transfers and staff top-ups -------------------------------------------------------


def test_a_bank_transfer_is_pending_until_staff_confirm_it_once():
    account = funded_account()
    staff = make_user("staff@example.com", is_staff=True)
    transfer = payment_start_bank_transfer(account=account, amount_nano=2_000 * UNIT, actor=None)
    assert transfer.status == Payment.Status.PENDING and transfer.reference.startswith("BT")
    assert balances(account) == (0, 0, 0)
    payment_confirm_bank_transfer(payment=transfer, actor=staff, reason="seen on the statement")
    payment_confirm_bank_transfer(payment=transfer, actor=staff)
    assert balances(account) == (2_000 * UNIT, 100 * UNIT, 0)  # with the 5% promotion
    event = AuditEvent.objects.get(action="billing.recharge")
    assert (event.actor, event.actor_kind, event.reason) == (
        staff,
        "staff",
        "seen on the statement",
    )


def test_a_cancelled_or_expired_transfer_cannot_be_confirmed(settings):
    account = funded_account()
    staff = make_user("staff@example.com", is_staff=True)
    cancelled = payment_start_bank_transfer(account=account, amount_nano=100 * UNIT, actor=None)
    payment_cancel(payment=cancelled, actor=None)
    with pytest.raises(ServiceError):
        payment_confirm_bank_transfer(payment=cancelled, actor=staff)
    old = payment_start_bank_transfer(account=account, amount_nano=100 * UNIT, actor=None)
    Payment.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(days=settings.BANK_TRANSFER_VALID_DAYS + 1)
    )
    assert payments_sweep_pending()["expired"] == 1
    old.refresh_from_db()
    assert old.status == Payment.Status.CANCELLED and "Expired" in old.failure_message
    assert balances(account) == (0, 0, 0)


def test_the_recharge_command_records_a_manual_payment_once(capsys):
    account = funded_account()
    for _ in range(2):
        call_command(
            "recharge",
            account=account.pk,
            amount="100.00",
            bonus="5",
            reference="wire-1",
            reason="bank transfer seen",
        )
    output = capsys.readouterr().out
    assert "Recorded: recharge ¥100.00 + bonus ¥5.00" in output
    assert "Already recorded" in output
    payment = Payment.objects.get(account=account)
    assert (payment.method, payment.status, payment.provider_reference) == (
        "manual",
        "succeeded",
        "wire-1",
    )
    assert balances(account) == (100 * UNIT, 5 * UNIT, 0)
    assert AuditEvent.objects.get(action="billing.recharge").actor_kind == "staff"


def test_a_reference_recorded_for_another_account_is_refused():
    first, second = funded_account(), funded_account()
    payment_record_manual(account=first, amount_nano=UNIT * 20, reference="wire-7")
    with pytest.raises(ServiceError, match="another account"):
        payment_record_manual(account=second, amount_nano=UNIT * 20, reference="wire-7")
    assert not Payment.objects.filter(account=second).exists()


def test_manual_records_refuse_bad_input():
    account = funded_account()
    for amount, reference in ((0, "r"), (-1, "r"), (UNIT, ""), (UNIT, "x" * 101)):
        with pytest.raises(ServiceError):
            payment_record_manual(account=account, amount_nano=amount, reference=reference)
    assert not Payment.objects.exists()


# --- Tier promotion -------------------------------------------------------------------------


def test_cumulative_paid_recharge_promotes_the_tier_with_an_audit_event():
    account = funded_account()
    assert account.tier.slug == "free"
    payment_record_manual(account=account, amount_nano=30 * UNIT, reference="a")
    account.refresh_from_db()
    assert account.tier.slug == "free"
    payment_record_manual(account=account, amount_nano=25 * UNIT, reference="b")  # 55 ≥ 50
    account.refresh_from_db()
    assert account.tier.slug == "standard"
    event = AuditEvent.objects.get(action="account.tier_change")
    assert event.actor_kind == "system" and "Standard" in event.reason
    payment_record_manual(account=account, amount_nano=2_000 * UNIT, reference="c")
    account.refresh_from_db()
    assert account.tier.slug == "pro"


def test_a_pinned_tier_is_not_promoted():
    account = funded_account()
    account.tier_pinned = True
    account.save(update_fields=["tier_pinned"])
    payment_record_manual(account=account, amount_nano=5_000 * UNIT, reference="big")
    account.refresh_from_db()
    assert account.tier == Tier.objects.get(slug="free")
    assert not AuditEvent.objects.filter(action="account.tier_change").exists()
