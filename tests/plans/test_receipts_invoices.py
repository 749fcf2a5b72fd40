"""Receipts and invoices for coding plans (issue 22): a receipt for every plan purchase
(purchase, renewal, upgrade; from the balance or by card), card-paid plans invoiceable and
on the statement beside the wallet, and billing_audit checking how each plan was paid.

A card-paid plan purchase is written here the way card payment for plans writes it: a
plan_purchase entry that moves nothing in the wallet, its fee the card's amount, naming the
billing Payment in its metadata; its refund a plan_refund that moves nothing either."""

import io
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from billing.documents import receipt_pdf, statement_pdf
from billing.invoices import invoice_request
from billing.models import LedgerEntry, Payment, PaymentMethod, Wallet
from billing.payments import payment_record_manual
from billing.receipts import PlanReceipt, Receipt, receipt_for
from billing.reconciliation import audit_account
from billing.selectors import current_month, paid_totals, refundable_nano
from billing.services import refund
from billing.statements import statement_csv, statement_data
from console.money import NANO_PER_UNIT
from console.services import ServiceError
from plans.models import Plan
from plans.services import plan_renew, plan_subscribe, plan_upgrade
from tests.billing.factories import funded_account
from tests.billing.test_payments import add_card
from tests.billing.test_refunds_invoices import CHINESE_BUYER, pdf_text

pytestmark = pytest.mark.django_db

UNIT = NANO_PER_UNIT
T0 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai, the account's zone


@pytest.fixture(autouse=True)
def fresh_state(fresh_shared_state):
    # An upgrade reads the subscription's quota windows.
    return fresh_shared_state


def plan(code) -> Plan:
    return Plan.objects.get(code=code)


def plan_entries(account):
    return LedgerEntry.objects.filter(account=account, kind="plan_purchase").order_by("pk")


def card_payment(account, amount_nano, *, status=Payment.Status.SUCCEEDED) -> Payment:
    card = PaymentMethod.objects.filter(account=account).first() or add_card(account)
    now = timezone.now()
    return Payment.objects.create(
        account=account,
        method=Payment.Method.CARD,
        provider=card.provider,
        reference=f"pay_{secrets.token_hex(12)}",
        amount_nano=amount_nano,
        currency=account.currency,
        payment_method=card,
        status=status,
        created_at=now,
        settled_at=now,
    )


def card_plan_purchase(account, price_nano=49 * UNIT, *, payment=None, at=None, **fields):
    """A plan bought by card: the wallet untouched, the fee paid by `payment`."""
    payment = payment or card_payment(account, price_nano)
    at = at or timezone.now()
    return LedgerEntry.objects.create(
        account=account,
        kind=LedgerEntry.Kind.PLAN_PURCHASE,
        fee_nano=price_nano,
        reference=f"plan-card-{secrets.token_hex(6)}",
        created_at=at,
        metadata={
            "plan": "lite",
            "plan_name": "Lite",
            "period": "month",
            "term": "purchase",
            "starts_at": at.isoformat(),
            "ends_at": (at + timedelta(days=31)).isoformat(),
            "subscription": 1,
            "method": "card",
            "payment": payment.reference,
        },
        **fields,
    )


def card_plan_refund(account, purchase, returned_nano, **fields):
    return LedgerEntry.objects.create(
        account=account,
        kind=LedgerEntry.Kind.PLAN_REFUND,
        reference=f"plan-refund-{secrets.token_hex(6)}",
        created_at=timezone.now(),
        metadata={"returned_nano": returned_nano, "purchase": purchase.pk, "method": "card"},
        **fields,
    )


# --- Receipts -------------------------------------------------------------------------------


def test_a_plan_bought_from_the_balance_has_a_receipt_with_its_term_and_both_parts():
    account = funded_account(recharge_units=100, bonus_units=50)
    plan_subscribe(account=account, plan=plan("lite"), period="month", actor=None, now=T0)
    entry = plan_entries(account).get()

    receipt = receipt_for(entry=entry)
    assert isinstance(receipt, PlanReceipt)
    assert (receipt.method, receipt.term, receipt.period, receipt.plan_name) == (
        "balance",
        "purchase",
        "month",
        "Lite",
    )
    assert receipt.recharge_nano + receipt.bonus_nano == receipt.price_nano == 49 * UNIT
    assert receipt.bonus_nano == 49 * UNIT // 3  # the proportional split, 2:1
    assert receipt.paid_nano == receipt.recharge_nano and receipt.card_nano == 0
    assert receipt.number == f"RC20261201{entry.pk:08d}"

    text = pdf_text(receipt_pdf(receipt, account))
    assert receipt.number in text and "GLM Coding Plan Lite" in text
    assert "Purchase" in text and "Monthly" in text
    # The term in the account's time zone (Asia/Shanghai), as its periods are counted.
    assert "2026-12-01 10:00 – 2027-01-01 10:00 (Asia/Shanghai)" in text
    assert "¥49.00" in text and "¥32.67" in text and "¥16.33" in text
    assert "not money paid" in text and "Paid from the recharge balance" in text
    assert "Paid by card" not in text


def test_renewals_and_upgrades_have_receipts_that_say_so():
    account = funded_account(recharge_units=1_000)
    subscription = plan_subscribe(
        account=account, plan=plan("lite"), period="month", actor=None, now=T0
    )
    plan_upgrade(account=account, plan=plan("pro"), actor=None, now=T0 + timedelta(days=10))
    assert plan_renew(subscription_id=subscription.pk, now=T0 + timedelta(days=31)) == "renewed"
    _purchase, upgrade, renewal = (receipt_for(entry=entry) for entry in plan_entries(account))

    assert (upgrade.term, upgrade.from_plan, upgrade.plan_name, upgrade.period) == (
        "upgrade",
        "lite",
        "Pro",
        "month",
    )
    text = pdf_text(receipt_pdf(upgrade, account))
    assert "Upgrade (from Lite)" in text and "GLM Coding Plan Pro" in text
    assert "2026-12-11 10:00 – 2027-01-01 10:00" in text  # the rest of the paid period

    assert (renewal.term, renewal.plan_name, renewal.price_nano) == ("renewal", "Pro", 149 * UNIT)
    text = pdf_text(receipt_pdf(renewal, account))
    assert "Renewal" in text and "2027-01-01 10:00 – 2027-02-01 10:00" in text
    assert "¥149.00" in text


def test_a_plan_paid_by_card_has_a_receipt_for_the_card_payment():
    account = funded_account()
    entry = card_plan_purchase(account, 49 * UNIT)
    receipt = receipt_for(entry=entry)
    assert (receipt.method, receipt.card_nano, receipt.paid_nano) == ("card", 49 * UNIT, 49 * UNIT)
    assert (receipt.recharge_nano, receipt.bonus_nano) == (0, 0)
    assert receipt.payment_reference == entry.metadata["payment"]

    text = pdf_text(receipt_pdf(receipt, account))
    assert "Paid by card" in text and "4242" in text and receipt.payment_reference in text
    assert "Amount paid" in text and "¥49.00" in text
    assert "not a tax invoice" in text  # and one may be requested for it
    assert "recharge balance" not in text


def test_receipt_numbers_are_unique_across_recharges_and_plans_and_stable():
    account = funded_account(recharge_units=100)
    payment, _ = payment_record_manual(account=account, amount_nano=100 * UNIT, reference="paid")
    plan_subscribe(account=account, plan=plan("lite"), period="month", actor=None)
    card_plan_purchase(account)
    entries = [payment.ledger_entry, *plan_entries(account)]
    numbers = [receipt_for(entry=entry).number for entry in entries]
    assert len(set(numbers)) == 3
    assert numbers == [receipt_for(entry=entry).number for entry in entries]
    assert isinstance(receipt_for(entry=payment.ledger_entry), Receipt)


def test_a_purchase_recorded_before_its_term_was_kept_prints_without_dates():
    account = funded_account(recharge_units=200)
    plan_subscribe(account=account, plan=plan("lite"), period="quarter", actor=None)
    entry = plan_entries(account).get()
    entry.metadata = {"plan": "lite", "period": "quarter", "subscription": 1}
    receipt = receipt_for(entry=entry)
    assert (receipt.term, receipt.plan_name, receipt.starts_at) == ("purchase", "Lite", None)
    text = pdf_text(receipt_pdf(receipt, account))
    assert "Quarterly" in text and "Term" not in text and "¥132.00" in text


def test_entries_of_other_kinds_have_no_receipt():
    account = funded_account(bonus_units=5)
    with pytest.raises(ValueError):
        receipt_for(entry=LedgerEntry.objects.get(account=account, kind="bonus_grant"))


# --- The receipt's page ---------------------------------------------------------------------


@pytest.fixture
def owner(client, world):
    client.force_login(world.owner_a)
    return world.account_a


def test_the_owner_downloads_a_plan_receipt_linked_from_the_transactions(client, owner):
    payment_record_manual(account=owner, amount_nano=100 * UNIT, reference="paid")
    plan_subscribe(account=owner, plan=plan("lite"), period="month", actor=None)
    card = card_plan_purchase(owner)
    page = client.get(reverse("billing:transactions")).content.decode()
    for entry in plan_entries(owner):
        url = reverse("billing:receipt", args=[entry.pk])
        assert url in page
        response = client.get(url)
        assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
        number = receipt_for(entry=entry).number
        assert f"receipt-{number}.pdf" in response["Content-Disposition"]
    assert "Paid by card: ¥49.00" in page and card.metadata["plan_name"] in page


def test_another_accounts_plan_receipt_and_entries_without_receipts_are_404(client, owner, world):
    theirs = funded_account(recharge_units=100)
    plan_subscribe(account=theirs, plan=plan("lite"), period="month", actor=None)
    other_card = card_plan_purchase(world.account_b)
    payment_record_manual(account=owner, amount_nano=100 * UNIT, reference="paid")
    plan_subscribe(account=owner, plan=plan("lite"), period="month", actor=None)
    charge = LedgerEntry.objects.create(
        account=owner, kind=LedgerEntry.Kind.CHARGE, model="glm-4.5", created_at=timezone.now()
    )
    refund_entry = card_plan_refund(owner, card_plan_purchase(owner), 1 * UNIT)
    for entry_id in (
        plan_entries(theirs).get().pk,  # someone else's, paid from their balance
        other_card.pk,  # someone else's, paid by card
        charge.pk,
        refund_entry.pk,  # a plan refund has no receipt
        LedgerEntry.objects.get(account=owner, kind="pack_grant").pk,
        10**12,
    ):
        assert client.get(reverse("billing:receipt", args=[entry_id])).status_code == 404


def test_a_developer_cannot_download_a_plan_receipt(client, world):
    entry = card_plan_purchase(world.account_a)
    client.force_login(world.developer_a.user)
    assert client.get(reverse("billing:receipt", args=[entry.pk])).status_code == 403


# --- What can be invoiced, and refunded -----------------------------------------------------


def test_plans_paid_by_card_are_invoiceable_and_plans_paid_from_the_balance_are_not_again():
    account = funded_account()
    payment_record_manual(account=account, amount_nano=100 * UNIT, reference="paid")
    plan_subscribe(account=account, plan=plan("lite"), period="month", actor=None)
    # The balance's plan was paid with recharged money, invoiceable once as that recharge.
    assert paid_totals(account=account).invoiceable_nano == 100 * UNIT

    purchase = card_plan_purchase(account, 149 * UNIT)
    totals = paid_totals(account=account)
    assert (totals.card_plans_nano, totals.invoiceable_nano) == (149 * UNIT, 249 * UNIT)
    assert totals.net_paid_nano == 100 * UNIT  # not a recharge: no tier promotion from it

    card_plan_refund(account, purchase, 40 * UNIT)
    assert paid_totals(account=account).invoiceable_nano == 209 * UNIT

    invoice_request(account=account, amount_nano=200 * UNIT, buyer=CHINESE_BUYER, actor=None)
    assert paid_totals(account=account).invoiceable_nano == 9 * UNIT
    with pytest.raises(ServiceError, match="coding plans paid by card"):
        invoice_request(account=account, amount_nano=10 * UNIT, buyer=CHINESE_BUYER, actor=None)
    invoice_request(account=account, amount_nano=9 * UNIT, buyer=CHINESE_BUYER, actor=None)
    assert paid_totals(account=account).invoiceable_nano == 0


def test_a_plan_paid_by_card_makes_no_invoiced_recharge_refundable():
    account = funded_account()
    payment_record_manual(account=account, amount_nano=100 * UNIT, reference="paid")
    invoice_request(account=account, amount_nano=100 * UNIT, buyer=CHINESE_BUYER, actor=None)
    assert refundable_nano(account=account) == 0

    card_plan_purchase(account, 49 * UNIT)
    assert paid_totals(account=account).invoiceable_nano == 49 * UNIT
    assert refundable_nano(account=account) == 0  # the card's money is not in the wallet
    with pytest.raises(ServiceError, match=r"At most ¥0\.00"):
        refund(account=account, amount_nano=1 * UNIT, reference="r1", reason="asked")
    assert Wallet.objects.get(account=account).recharge_nano == 100 * UNIT


def test_recharges_not_invoiced_stay_refundable_beside_a_card_plan():
    account = funded_account()
    payment_record_manual(account=account, amount_nano=100 * UNIT, reference="paid")
    card_plan_purchase(account, 49 * UNIT)
    invoice_request(account=account, amount_nano=30 * UNIT, buyer=CHINESE_BUYER, actor=None)
    # Every invoice counts against the recharges (it does not say what it covers).
    assert refundable_nano(account=account) == 70 * UNIT
    refund(account=account, amount_nano=70 * UNIT, reference="r1", reason="asked")
    assert paid_totals(account=account).invoiceable_nano == 49 * UNIT


def test_the_invoices_page_explains_and_shows_card_plans(client, owner):
    payment_record_manual(account=owner, amount_nano=100 * UNIT, reference="paid")
    page = client.get(reverse("billing:invoices")).content.decode()
    assert "A plan paid from the balance is invoiced with the recharges" in page
    assert "Coding plans paid by card" not in page
    card_plan_purchase(owner, 49 * UNIT)
    page = client.get(reverse("billing:invoices")).content.decode()
    assert "Coding plans paid by card" in page and "¥149.00" in page  # available


# --- Statements -----------------------------------------------------------------------------


def test_a_statement_shows_plans_paid_by_card_beside_the_wallet():
    account = funded_account(recharge_units=100)
    month = current_month(account=account)
    data = statement_data(account=account, month=month)
    assert "card_plans_nano" not in data["movements"]  # the layout of months without one
    assert "Coding plans paid by card" not in pdf_text(statement_pdf(data, partial=True))

    plan_subscribe(account=account, plan=plan("lite"), period="month", actor=None)
    purchase = card_plan_purchase(account, 149 * UNIT)
    card_plan_refund(account, purchase, 9 * UNIT)
    data = statement_data(account=account, month=month)
    movements = data["movements"]
    assert movements["card_plans_nano"] == 140 * UNIT
    assert movements["plan_purchases_nano"] == 49 * UNIT  # from the balance only
    # The wallet's lines still reconcile: the card moved nothing in it.
    opening = data["opening"]["recharge"] + data["opening"]["bonus"]
    closing = data["closing"]["recharge"] + data["closing"]["bonus"]
    assert opening + movements["recharges_nano"] - movements["plan_purchases_nano"] == closing
    text = pdf_text(statement_pdf(data, partial=True))
    assert "Coding plans paid by card" in text and "¥140.00" in text
    # The CSV is the usage table (project × model): no plan appears in it.
    assert statement_csv(data).count("\n") == 2


# --- billing_audit --------------------------------------------------------------------------


def test_plans_paid_both_ways_and_refunded_pass_the_audit():
    account = funded_account(recharge_units=100, bonus_units=10)
    plan_subscribe(account=account, plan=plan("lite"), period="month", actor=None)
    purchase = card_plan_purchase(account, 149 * UNIT)
    card_plan_refund(account, purchase, 100 * UNIT)
    card_plan_refund(account, purchase, 49 * UNIT)
    assert audit_account(account) == []


def _problems(account) -> str:
    return "; ".join(map(str, audit_account(account)))


@pytest.mark.billing_tamper
def test_a_balance_paid_plan_whose_fee_is_not_what_the_wallet_gave_is_reported():
    account = funded_account(recharge_units=100)
    plan_subscribe(account=account, plan=plan("lite"), period="month", actor=None)
    entry = plan_entries(account).get()
    LedgerEntry.objects.filter(pk=entry.pk).update(fee_nano=entry.fee_nano + 1)
    assert f"plan_purchase {entry.pk} fee: ledger says {49 * UNIT}" in _problems(account)


@pytest.mark.billing_tamper
def test_a_card_paid_plan_that_moved_the_wallet_is_reported():
    account = funded_account(recharge_units=100)
    entry = card_plan_purchase(account, recharge_delta_nano=-5 * UNIT)
    Wallet.objects.filter(account=account).update(recharge_nano=95 * UNIT)  # the sums agree
    problems = audit_account(account)
    assert len(problems) == 1 and "paid by card but moved" in str(problems[0])
    assert f"plan_purchase {entry.pk}" in str(problems[0])


def _other_account_payment(account):
    return card_payment(funded_account(), 49 * UNIT)


@pytest.mark.billing_tamper
@pytest.mark.parametrize(
    "payment, expected",
    [
        (lambda account: card_payment(account, 50 * UNIT), f"payment reference says {49 * UNIT}"),
        (lambda account: card_payment(account, 49 * UNIT, status="pending"), "is pending"),
        (lambda account: card_payment(account, 49 * UNIT, status="declined"), "is declined"),
        (_other_account_payment, "is not this account's"),
        (lambda account: Payment(reference="pay_nowhere"), "is not this account's"),
        (lambda account: Payment(reference=""), "without a payment reference"),
    ],
    ids=["amount", "pending", "declined", "another account", "missing", "no reference"],
)
def test_a_card_paid_plan_must_name_a_succeeded_payment_of_its_account_for_its_fee(
    payment, expected
):
    account = funded_account()
    made = payment(account)
    card_plan_purchase(account, 49 * UNIT, payment=made)
    problems = _problems(account)
    if expected.startswith("payment reference says"):
        expected = f"payment {made.reference}: ledger says {49 * UNIT}, stored {50 * UNIT}"
    assert expected in problems


@pytest.mark.billing_tamper
def test_one_card_payment_cannot_pay_for_two_plans_or_a_plan_and_a_recharge():
    account = funded_account()
    payment = card_payment(account, 49 * UNIT)
    card_plan_purchase(account, payment=payment)
    card_plan_purchase(account, payment=payment)
    assert _problems(account).count("paid for another entry too") == 2

    other = funded_account()
    recharge_payment, _ = payment_record_manual(
        account=other, amount_nano=49 * UNIT, reference="pay_twice"
    )
    Payment.objects.filter(pk=recharge_payment.pk).update(method="card")
    card_plan_purchase(other, payment=recharge_payment)
    assert "paid for another entry too" in _problems(other)


@pytest.mark.billing_tamper
def test_card_refunds_that_move_the_wallet_or_exceed_the_purchase_are_reported():
    account = funded_account(recharge_units=100)
    purchase = card_plan_purchase(account, 49 * UNIT)
    card_plan_refund(account, purchase, 30 * UNIT)
    card_plan_refund(account, purchase, 20 * UNIT)
    assert f"plan_purchase {purchase.pk} refunds: {50 * UNIT} returned" in _problems(account)

    moved = funded_account(recharge_units=100)
    purchase = card_plan_purchase(moved, 49 * UNIT)
    card_plan_refund(moved, purchase, 10 * UNIT, recharge_delta_nano=10 * UNIT)
    Wallet.objects.filter(account=moved).update(recharge_nano=110 * UNIT)
    assert "paid back to a card but moved" in _problems(moved)

    wrong = funded_account(recharge_units=100)
    plan_subscribe(account=wrong, plan=plan("lite"), period="month", actor=None)
    balance_purchase = plan_entries(wrong).get()
    card_plan_refund(wrong, balance_purchase, 10 * UNIT)
    assert f"names no card plan purchase {balance_purchase.pk}" in _problems(wrong)


@pytest.mark.billing_tamper
def test_the_audit_command_fails_on_a_card_plan_without_its_payment():
    account = funded_account()
    card_plan_purchase(account, payment=Payment(reference="pay_nowhere"))
    err = io.StringIO()
    with pytest.raises(SystemExit) as exit_status:
        call_command("billing_audit", stderr=err, stdout=io.StringIO())
    assert exit_status.value.code == 1
    assert "payment pay_nowhere is not this account's" in err.getvalue()


def test_a_receipt_dates_in_utc_as_it_says_whatever_the_accounts_zone(client, owner):
    owner.time_zone = "Asia/Shanghai"  # 8 hours ahead: the page's zone is not the receipt's
    owner.save(update_fields=["time_zone"])
    payment_record_manual(account=owner, amount_nano=100 * UNIT, reference="paid")
    plan_subscribe(account=owner, plan=plan("lite"), period="month", actor=None)
    recharge = LedgerEntry.objects.get(account=owner, kind=LedgerEntry.Kind.RECHARGE)
    for entry in (recharge, *plan_entries(owner)):
        text = pdf_text(client.get(reverse("billing:receipt", args=[entry.pk])).content)
        assert f"Date {entry.created_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC" in text
