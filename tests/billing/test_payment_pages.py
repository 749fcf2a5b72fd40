"""The recharge, payment, card, settings, invoice and statement pages: their states, their
refusals (a clear error, nothing changed), and card numbers that never come back."""

import pytest
from django.urls import reverse
from django.utils import timezone

from billing.models import BillingProfile, Invoice, Payment, PaymentMethod, Statement, Wallet
from billing.payments import payment_record_manual
from billing.selectors import current_month, previous_month
from console.money import NANO_PER_UNIT
from tests.billing.test_payments import PENDING, add_card
from tests.billing.test_refunds_invoices import TAX_ID

pytestmark = pytest.mark.django_db
UNIT = NANO_PER_UNIT
VISA = "4242424242424242"
NEXT_YEAR = str(timezone.now().year + 1)


def new_card(amount="100", number=VISA, **extra):
    return {
        "amount": amount,
        "method": "new_card",
        "card-number": number,
        "card-exp_month": "12",
        "card-exp_year": NEXT_YEAR,
        "card-cvc": "123",
        **extra,
    }


@pytest.fixture
def owner(client, world):
    client.force_login(world.owner_a)
    return world.account_a


def total(account):
    wallet = Wallet.objects.get(account=account)
    return wallet.recharge_nano + wallet.bonus_nano


# --- Recharge -------------------------------------------------------------------------------


def test_an_empty_account_sees_the_form_and_an_empty_history(client, owner):
    page = client.get(reverse("billing:recharge")).content.decode()
    assert "No payments yet" in page
    assert "From ¥1,000.00: +5% bonus credit" in page
    assert 'name="card-number"' in page


def test_a_new_card_pays_is_saved_and_the_number_never_comes_back(client, owner):
    response = client.post(reverse("billing:recharge_start"), new_card("100"))
    payment = Payment.objects.get(account=owner)
    assert response.status_code == 302
    assert response["Location"] == reverse("billing:payment", args=[payment.pk])
    # Error reports would show these POST fields as stars.
    assert {"card-number", "card-cvc"} <= set(response.wsgi_request.sensitive_post_parameters)
    page = client.get(response["Location"]).content.decode()
    assert "Payment received" in page and "¥100.00" in page
    assert total(owner) == 100 * UNIT
    card = PaymentMethod.objects.get(account=owner)
    assert str(card) == "Visa •••• 4242"
    listing = client.get(reverse("billing:recharge")).content.decode()
    assert VISA not in listing and "Visa •••• 4242" in listing


def test_htmx_gets_the_result_in_place_and_a_pending_one_polls(client, owner):
    card = add_card(owner, PENDING)
    response = client.post(
        reverse("billing:recharge_start"),
        {"amount": "50", "method": f"card:{card.pk}"},
        HTTP_HX_REQUEST="true",
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in page  # a fragment
    assert "Confirming your payment" in page
    payment = Payment.objects.get(account=owner)
    assert f'hx-get="{reverse("billing:payment", args=[payment.pk])}"' in page
    assert 'hx-trigger="every 2s"' in page
    # The poll answers with the same fragment; once settled it stops polling.
    Payment.objects.filter(pk=payment.pk).update(status="succeeded")
    polled = client.get(reverse("billing:payment", args=[payment.pk]), HTTP_HX_REQUEST="true")
    assert "Payment received" in polled.content.decode()
    assert "hx-trigger" not in polled.content.decode()


def test_a_declined_card_says_so_and_credits_nothing(client, owner):
    page = client.post(
        reverse("billing:recharge_start"),
        new_card("100", "4000000000000002"),
        HTTP_HX_REQUEST="true",
    ).content.decode()
    assert "Payment declined" in page and "The card was declined." in page
    assert total(owner) == 0
    # A card refused on its first charge is not kept.
    assert not PaymentMethod.objects.filter(account=owner, removed_at__isnull=True).exists()


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("0", "more than zero"),
        ("-5", "must be positive"),
        ("10.005", "at most 2 decimal places"),
        ("abc", "Enter a number"),
        ("", "This field is required"),
        ("9", "smallest recharge is ¥10.00"),
        ("9" * 40, "at most 32 characters"),
        ("100000001", "too large"),
    ],
)
def test_bad_amounts_get_a_clear_error_and_nothing_changes(client, owner, amount, message):
    response = client.post(reverse("billing:recharge_start"), new_card(amount))
    assert response.status_code == 422
    assert message in response.content.decode()
    assert not Payment.objects.exists() and not PaymentMethod.objects.exists()
    assert VISA not in response.content.decode()  # not even back into the refused form


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"card-number": "4242424242424241"}, "not valid"),
        ({"card-number": "4111111111111111"}, "test cards only"),
        ({"card-exp_month": "13"}, "Check the new card"),
        ({"card-exp_year": "2001"}, "expired"),
        ({"card-cvc": "1"}, "3 or 4 digits"),
        ({"method": "card:999999999999999999999"}, "Select a valid choice"),
        ({"method": "crypto"}, "Select a valid choice"),
    ],
)
def test_bad_cards_and_methods_are_refused(client, owner, fields, message):
    response = client.post(reverse("billing:recharge_start"), new_card("100", **fields))
    assert response.status_code == 422
    assert message in response.content.decode()
    assert not Payment.objects.exists() and not PaymentMethod.objects.exists()


def test_another_accounts_saved_card_is_not_a_choice(client, owner, world):
    theirs = add_card(world.account_b)
    response = client.post(
        reverse("billing:recharge_start"), {"amount": "100", "method": f"card:{theirs.pk}"}
    )
    assert response.status_code == 422
    assert not Payment.objects.exists()


def test_a_bank_transfer_shows_where_to_send_and_can_be_cancelled(client, owner, settings):
    response = client.post(
        reverse("billing:recharge_start"), {"amount": "2000", "method": "bank_transfer"}
    )
    payment = Payment.objects.get(account=owner)
    page = client.get(response["Location"]).content.decode()
    assert "Waiting for your bank transfer" in page
    assert payment.reference in page and settings.SELLER["bank_account"] in page
    client.post(reverse("billing:payment_cancel", args=[payment.pk]))
    payment.refresh_from_db()
    assert payment.status == "cancelled"
    assert total(owner) == 0


def test_a_card_payment_cannot_be_cancelled(client, owner):
    card = add_card(owner)
    client.post(reverse("billing:recharge_start"), {"amount": "20", "method": f"card:{card.pk}"})
    payment = Payment.objects.get()
    response = client.post(reverse("billing:payment_cancel", args=[payment.pk]), follow=True)
    assert "Only a pending bank transfer" in response.content.decode()
    payment.refresh_from_db()
    assert payment.status == "succeeded"


# --- Cards ----------------------------------------------------------------------------------


def test_cards_add_default_and_remove_with_confirmation(client, owner):
    data = {"number": VISA, "exp_month": "12", "exp_year": NEXT_YEAR, "cvc": "123"}
    client.post(reverse("billing:card_add"), data)
    client.post(reverse("billing:card_add"), {**data, "number": "5555555555554444"})
    visa, mastercard = PaymentMethod.objects.order_by("pk")
    assert visa.is_default
    client.post(reverse("billing:card_default", args=[mastercard.pk]))
    mastercard.refresh_from_db()
    assert mastercard.is_default
    confirm = client.get(reverse("billing:card_remove", args=[mastercard.pk])).content.decode()
    assert "Remove Mastercard •••• 4444?" in confirm
    client.post(reverse("billing:card_remove", args=[mastercard.pk]))
    assert list(PaymentMethod.objects.filter(removed_at__isnull=True)) == [visa]
    # A removed card is gone from every page and action.
    assert client.post(reverse("billing:card_default", args=[mastercard.pk])).status_code == 404


def test_an_invalid_card_is_refused_without_echoing_it(client, owner):
    response = client.post(
        reverse("billing:card_add"),
        {"number": "4000000000000010", "exp_month": "12", "exp_year": NEXT_YEAR, "cvc": "987"},
    )
    page = response.content.decode()
    assert response.status_code == 422
    assert "4000000000000010" not in page and "987" not in page
    assert not PaymentMethod.objects.exists()


# --- Settings -------------------------------------------------------------------------------


def test_auto_recharge_needs_a_card_then_turns_on(client, owner):
    data = {"enabled": "on", "threshold": "20", "amount": "100", "monthly_limit": "300"}
    response = client.post(reverse("billing:auto_recharge"), data)
    assert response.status_code == 422 and "Add a card first" in response.content.decode()
    add_card(owner)
    response = client.post(reverse("billing:auto_recharge"), data, follow=True)
    assert "Auto-recharge is on." in response.content.decode()
    profile = BillingProfile.objects.get(account=owner)
    assert (profile.auto_recharge_threshold_nano, profile.auto_recharge_amount_nano) == (
        20 * UNIT,
        100 * UNIT,
    )
    assert Wallet.objects.get(account=owner).auto_recharge_below_nano == 20 * UNIT
    client.post(reverse("billing:auto_recharge"), {"enabled": ""})
    assert Wallet.objects.get(account=owner).auto_recharge_below_nano is None


def test_invoice_details_refuse_an_invalid_tax_id(client, owner):
    response = client.post(
        reverse("billing:invoice_details"),
        {"buyer_type": "company", "title": "智谱", "tax_id": "91350100M000100Y44"},
    )
    assert response.status_code == 422 and "unified social credit code" in response.content.decode()
    assert not BillingProfile.objects.filter(account=owner).exclude(tax_id="").exists()


# --- Invoices, receipts, statements ---------------------------------------------------------


def test_an_invoice_is_requested_listed_and_downloaded(client, owner):
    payment_record_manual(account=owner, amount_nano=300 * UNIT, reference="paid")
    page = client.get(reverse("billing:invoices")).content.decode()
    assert "¥300.00" in page  # available to invoice
    response = client.post(
        reverse("billing:invoice_request"),
        {
            "amount": "120.50",
            "buyer_type": "company",
            "title": "北京智谱华章科技有限公司",
            "tax_id": TAX_ID.lower(),
            "save_details": "on",
        },
        follow=True,
    )
    invoice = Invoice.objects.get(account=owner)
    page = response.content.decode()
    assert f"Invoice {invoice.number} issued." in page
    assert "¥179.50" in page  # what is left to invoice
    assert BillingProfile.objects.get(account=owner).tax_id == TAX_ID
    pdf = client.get(reverse("billing:invoice_pdf", args=[invoice.pk]))
    assert pdf["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"amount": "300.01"}, "At most ¥300.00 can be invoiced"),
        ({"amount": "0"}, "more than zero"),
        ({"tax_id": "123"}, "unified social credit code"),
        ({"title": ""}, "This field is required"),
        ({"title": "x" * 101}, "at most 100 characters"),
    ],
)
def test_bad_invoice_requests_change_nothing(client, owner, fields, message):
    payment_record_manual(account=owner, amount_nano=300 * UNIT, reference="paid")
    data = {"amount": "100", "buyer_type": "company", "title": "Acme", "tax_id": TAX_ID, **fields}
    response = client.post(reverse("billing:invoice_request"), data)
    assert response.status_code == 422
    assert message in response.content.decode()
    assert not Invoice.objects.exists()


def test_an_account_with_nothing_paid_is_told_to_recharge_first(client, owner):
    assert "Nothing to invoice yet" in client.get(reverse("billing:invoices")).content.decode()


def test_receipts_only_for_recharges(client, owner):
    payment, _ = payment_record_manual(account=owner, amount_nano=30 * UNIT, reference="paid")
    assert client.get(reverse("billing:receipt", args=[payment.ledger_entry_id])).status_code == 200
    pack_entry = owner.ledger_entries.get(kind="pack_grant")
    assert client.get(reverse("billing:receipt", args=[pack_entry.pk])).status_code == 404
    transactions = client.get(reverse("billing:transactions")).content.decode()
    assert reverse("billing:receipt", args=[payment.ledger_entry_id]) in transactions


def test_statements_list_generate_and_download(client, owner):
    owner.created_at -= timezone.timedelta(days=40)
    owner.save(update_fields=["created_at"])
    last = previous_month(current_month(account=owner))
    page = client.get(reverse("billing:statements")).content.decode()
    assert "Not made yet" in page and "In progress" in page
    client.post(reverse("billing:statement_generate"), {"month": f"{last:%Y-%m}"})
    assert Statement.objects.filter(account=owner, month=last).exists()
    csv_response = client.get(reverse("billing:statement_csv", args=[f"{last:%Y-%m}"]))
    assert csv_response.content.decode().startswith("month,currency,project")
    assert "attachment" in csv_response["Content-Disposition"]


@pytest.mark.parametrize("month", ["2026-13", "1999-01", "abcd-ef", "2026-1", "9" * 30])
def test_bad_or_unknown_statement_months_are_404(client, owner, month):
    assert client.get(reverse("billing:statement_csv", args=[month])).status_code == 404


def test_a_month_not_yet_made_is_404_until_generated(client, owner):
    assert client.get(reverse("billing:statement_pdf", args=["2020-01"])).status_code == 404
