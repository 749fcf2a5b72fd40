"""Faults and races around payments: a settlement that fails after the provider took the
money, a currency change with a payment in flight, two first cards at once, the same refund
twice at once, card numbers in error reports, staff references recorded before payments
existed, and the staff commands for transfers and invoices."""

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse
from django.utils import timezone
from django.views.debug import ExceptionReporter

from billing import payments as payments_module
from billing.invoices import Buyer, invoice_request
from billing.models import Invoice, LedgerEntry, Payment, PaymentMethod, Wallet
from billing.payments import (
    payment_record_manual,
    payment_start_bank_transfer,
    payment_start_card,
    payments_sweep_pending,
)
from billing.services import refund
from console.money import NANO_PER_UNIT
from console.services import ServiceError
from portal.services import account_update
from tests.billing.factories import funded_account
from tests.billing.test_payments import add_card
from tests.conftest import requires_postgres
from tests.factories import make_user
from tests.threads import run_together

pytestmark = pytest.mark.django_db
UNIT = NANO_PER_UNIT


def balances(account):
    wallet = Wallet.objects.get(account=account)
    return wallet.recharge_nano, wallet.bonus_nano


def test_a_charge_whose_settlement_failed_is_credited_by_the_sweep(monkeypatch):
    account = funded_account()
    card = add_card(account)
    real_recharge = payments_module.recharge

    def connection_lost(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(payments_module, "recharge", connection_lost)
    with pytest.raises(OperationalError):
        payment_start_card(account=account, amount_nano=80 * UNIT, payment_method=card, actor=None)
    payment = Payment.objects.get(account=account)
    # The provider took the money and said so; the settlement did not commit.
    assert payment.status == "pending" and payment.provider_reference
    monkeypatch.setattr(payments_module, "recharge", real_recharge)
    Payment.objects.filter(pk=payment.pk).update(created_at=timezone.now() - timedelta(minutes=1))
    assert payments_sweep_pending()["settled"] == 1
    payment.refresh_from_db()
    assert payment.status == "succeeded"
    assert balances(account) == (80 * UNIT, 0)


def test_an_unacknowledged_payment_is_left_alone_until_the_provider_timeout(settings):
    account = funded_account()
    payment = Payment.objects.create(
        account=account,
        method="card",
        provider="sandbox",
        reference="pay_in_flight",
        amount_nano=20 * UNIT,
        currency="CNY",
        payment_method=add_card(account),
        created_at=timezone.now() - timedelta(seconds=30),
    )
    payments_sweep_pending()
    payment.refresh_from_db()
    assert payment.status == "pending"  # 30 s: the provider may still be answering
    Payment.objects.filter(pk=payment.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.PAYMENT_PROVIDER_TIMEOUT_SECONDS + 1)
    )
    payments_sweep_pending()
    payment.refresh_from_db()
    assert payment.status == "declined"


def test_a_payment_in_flight_fixes_the_currency():
    account = funded_account()
    owner = account.memberships.get().user
    transfer = payment_start_bank_transfer(account=account, amount_nano=100 * UNIT, actor=owner)
    assert transfer.currency == "CNY"
    with pytest.raises(ServiceError, match="currency cannot change"):
        account_update(
            account=account,
            actor=owner,
            name=account.name,
            time_zone=account.time_zone,
            currency="USD",
        )
    account.refresh_from_db()
    assert account.currency == "CNY" and account.currency_locked


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_two_first_cards_at_once_are_both_saved_and_one_is_the_default():
    account = funded_account()
    assert run_together(lambda _index: add_card(account), 2) == []
    assert PaymentMethod.objects.filter(account=account).count() == 2
    assert PaymentMethod.objects.filter(account=account, is_default=True).count() == 1


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_the_same_refund_twice_at_once_is_recorded_once():
    account = funded_account()
    payment_record_manual(account=account, amount_nano=100 * UNIT, reference=f"paid-{account.pk}")
    results = []

    def ask(_index):
        results.append(
            refund(account=account, amount_nano=30 * UNIT, reference="same", reason="asked")
        )

    assert run_together(ask, 2) == []
    assert sorted(replayed for _entry, replayed in results) == [False, True]
    assert balances(account) == (70 * UNIT, 0)


def test_error_reports_never_show_a_card_number(client, world, monkeypatch):
    client.force_login(world.owner_a)

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(payments_module, "lock_in_order", broken)
    data = {
        "amount": "100",
        "method": "new_card",
        "card-number": "4242 4242 4242 4242",
        "card-exp_month": "12",
        "card-exp_year": "2035",
        "card-cvc": "737",
    }
    with pytest.raises(RuntimeError) as raised:
        client.post(reverse("billing:recharge_start"), data)
    frames = raised.value.__traceback__  # what a 500 report or the DEBUG page walks
    report = ExceptionReporter(None, raised.type, raised.value, frames).get_traceback_text()
    assert "the database went away" in report
    for secret in ("4242 4242 4242 4242", "4242424242424242", "737"):
        assert secret not in report
    assert "payment_method_add" in report  # the frames are there, their card values are not


@pytest.mark.django_db(transaction=True)
def test_a_staff_reference_recorded_before_payments_existed_is_still_a_replay(capsys):
    account = funded_account()
    executor = MigrationExecutor(connection)
    before_payments = [("billing", "0006_seed_promotions")]
    executor.migrate(before_payments)
    # A staff top-up as the code of that time recorded it (today's services expect today's
    # tables): the recharge entry, the promotion bonus entry with the same reference, the
    # wallet's balances. Written with the historical models of that state.
    old = executor.loader.project_state(before_payments).apps
    OldLedgerEntry = old.get_model("billing", "LedgerEntry")
    now = timezone.now()
    OldLedgerEntry.objects.create(
        account_id=account.pk,
        kind="recharge",
        recharge_delta_nano=100 * UNIT,
        reference="TX-1",
        metadata={"method": "manual"},
        created_at=now,
    )
    OldLedgerEntry.objects.create(
        account_id=account.pk,
        kind="bonus_grant",
        bonus_delta_nano=5 * UNIT,
        reference="TX-1",
        metadata={"granted_nano": 5 * UNIT},
        created_at=now,
    )
    old.get_model("billing", "Wallet").objects.filter(account_id=account.pk).update(
        recharge_nano=100 * UNIT, bonus_nano=5 * UNIT
    )
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    payment = Payment.objects.get(account=account)
    assert (payment.provider_reference, payment.amount_nano, payment.bonus_nano) == (
        "TX-1",
        100 * UNIT,
        5 * UNIT,
    )
    call_command("recharge", account=account.pk, amount="100", reference="TX-1")
    assert "Already recorded" in capsys.readouterr().out
    assert balances(account) == (100 * UNIT, 5 * UNIT)


def test_staff_confirm_a_transfer_by_its_reference(capsys):
    account = funded_account()
    make_user("ops@example.com", is_staff=True)
    make_user("customer@example.com")
    transfer = payment_start_bank_transfer(account=account, amount_nano=1_000 * UNIT, actor=None)
    with pytest.raises(CommandError, match="No staff user"):
        call_command("confirm_transfer", transfer.reference, staff="customer@example.com")
    with pytest.raises(CommandError, match="No bank transfer"):
        call_command("confirm_transfer", "BTNOTHING", staff="ops@example.com")
    for _ in range(2):
        call_command(
            "confirm_transfer", transfer.reference.lower(), staff="ops@example.com", reason="line 7"
        )
    assert "credited to account" in capsys.readouterr().out
    assert balances(account) == (1_000 * UNIT, 50 * UNIT)
    assert LedgerEntry.objects.filter(account=account, kind="recharge").count() == 1


def test_staff_void_an_invoice_by_its_number(capsys):
    account = funded_account()
    make_user("ops@example.com", is_staff=True)
    payment_record_manual(account=account, amount_nano=100 * UNIT, reference="paid")
    invoice = invoice_request(
        account=account,
        amount_nano=100 * UNIT,
        buyer=Buyer(type="individual", title="李四"),
        actor=None,
    )
    call_command("void_invoice", invoice.number, staff="ops@example.com", reason="wrong title")
    assert "with reversal" in capsys.readouterr().out
    assert Invoice.objects.filter(reverses=invoice).count() == 1
    with pytest.raises(CommandError, match="already"):
        call_command("void_invoice", invoice.number, staff="ops@example.com", reason="again")


def test_an_overlong_invoice_email_is_refused_not_a_500(client, world):
    client.force_login(world.owner_a)
    response = client.post(
        reverse("billing:invoice_details"),
        {"buyer_type": "individual", "title": "Zhang", "invoice_email": "a" * 250 + "@example.com"},
    )
    assert response.status_code == 422
