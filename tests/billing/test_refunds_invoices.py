"""Refunds (staff) and tax invoices: the limits DESIGN.md sets, proportional bonus
clawback, gapless invoice numbers under concurrency, reversals, and the PDFs' text."""

import io
import os
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command
from pypdf import PdfReader

from billing.documents import invoice_pdf, receipt_pdf
from billing.invoices import (
    Buyer,
    amount_in_chinese,
    clean_tax_id,
    invoice_request,
    invoice_void,
    uscc_valid,
)
from billing.models import Invoice, InvoiceSequence, LedgerEntry, Wallet
from billing.payments import payment_record_manual, payment_start_card
from billing.receipts import receipt_for
from billing.reconciliation import audit_all
from billing.selectors import paid_totals, refundable_nano
from billing.services import refund
from console.models import AuditEvent
from console.money import NANO_PER_UNIT
from console.services import ServiceError
from gateway.settlement import charge_usage
from tests.billing.factories import funded_account
from tests.billing.test_payments import add_card
from tests.conftest import ROOT, requires_postgres
from tests.threads import run_together

pytestmark = pytest.mark.django_db
UNIT = NANO_PER_UNIT
TAX_ID = "91350100M000100Y43"  # GB 32100-2015's own example
CHINESE_BUYER = Buyer(type="company", title="北京智谱华章科技有限公司", tax_id=TAX_ID)


def balances(account):
    wallet = Wallet.objects.get(account=account)
    return wallet.recharge_nano, wallet.bonus_nano, wallet.arrears_nano


def paid_account(*payments):
    """An account whose recharges are `(amount, bonus)` pairs, oldest first."""
    account = funded_account()
    for index, (amount, bonus) in enumerate(payments):
        payment_record_manual(
            account=account,
            amount_nano=amount * UNIT,
            bonus_nano=bonus * UNIT,
            reference=f"p{account.pk}-{index}",
        )
    return account


def pdf_text(pdf: bytes) -> str:
    """The PDF's text layer, read with pypdf (pure Python: no poppler on a fresh machine)."""
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


# --- Refunds --------------------------------------------------------------------------------


def test_a_refund_above_the_refundable_amount_is_refused_and_changes_nothing():
    account = paid_account((100, 0))
    with pytest.raises(ServiceError, match=r"At most ¥100\.00"):
        refund(account=account, amount_nano=100 * UNIT + 1, reference="r", reason="asked")
    assert balances(account) == (100 * UNIT, 0, 0)
    assert not LedgerEntry.objects.filter(kind="refund").exists()


def test_a_refund_within_it_claws_back_the_promotion_bonus_in_proportion():
    account = paid_account((1_000, 50))  # the +5% promotion's shape
    entry, replayed = refund(account=account, amount_nano=400 * UNIT, reference="r", reason="asked")
    assert not replayed
    assert (entry.recharge_delta_nano, entry.bonus_delta_nano) == (-400 * UNIT, -20 * UNIT)
    assert balances(account) == (600 * UNIT, 30 * UNIT, 0)
    assert audit_all()[1] == []
    event = AuditEvent.objects.get(action="billing.refund")
    assert event.reason == "asked"
    # A replay changes nothing.
    again, replayed = refund(account=account, amount_nano=400 * UNIT, reference="r", reason="asked")
    assert replayed and again.pk == entry.pk
    assert balances(account) == (600 * UNIT, 30 * UNIT, 0)


def test_refunds_give_back_the_newest_recharges_first():
    account = paid_account((100, 0), (1_000, 100))
    entry, _ = refund(account=account, amount_nano=1_050 * UNIT, reference="r", reason="x")
    lines = entry.metadata["allocations"]
    assert [line["amount_nano"] for line in lines] == [1_000 * UNIT, 50 * UNIT]
    assert [line["clawback_nano"] for line in lines] == [100 * UNIT, 0]


def test_the_clawback_stops_at_a_zero_bonus_balance():
    # The newest recharge carried a large bonus; spending took the bonus down in proportion
    # to both balances, so less bonus is left than that recharge's share would claw back.
    account = paid_account((1_000, 0), (100, 100))
    charge_usage(
        account=account,
        model="glm-5",
        input_tokens=50_000_000,  # ¥900, split 1,100 : 100
        output_tokens=0,
        request_id="spend",
        project=account.projects.get(),
    )
    recharge, bonus, _arrears = balances(account)
    assert bonus < 100 * UNIT
    entry, _ = refund(account=account, amount_nano=recharge, reference="r", reason="closing")
    assert sum(line["clawback_nano"] for line in entry.metadata["allocations"]) == 100 * UNIT
    assert -entry.bonus_delta_nano == bonus
    assert balances(account) == (0, 0, 0)
    assert audit_all()[1] == []


def test_bonus_is_never_refundable_and_invoiced_money_is_not_either():
    account = paid_account((100, 50))
    assert refundable_nano(account=account) == 100 * UNIT
    invoice_request(account=account, amount_nano=60 * UNIT, buyer=CHINESE_BUYER, actor=None)
    assert refundable_nano(account=account) == 40 * UNIT
    with pytest.raises(ServiceError):
        refund(account=account, amount_nano=41 * UNIT, reference="r", reason="x")


@pytest.mark.parametrize(
    ("amount", "reference", "reason"),
    [(0, "r", "x"), (-1, "r", "x"), (UNIT, "", "x"), (UNIT, "r", " ")],
)
def test_refunds_refuse_bad_input(amount, reference, reason):
    account = paid_account((100, 0))
    with pytest.raises(ServiceError):
        refund(account=account, amount_nano=amount, reference=reference, reason=reason)
    assert balances(account) == (100 * UNIT, 0, 0)


def test_the_refund_command_prints_what_it_did_and_refuses_too_much(capsys):
    account = paid_account((100, 10))
    call_command("refund", account=account.pk, amount="50", reference="t-1", reason="customer")
    assert "Recorded: refund ¥50.00, bonus clawed back ¥5.00" in capsys.readouterr().out
    with pytest.raises(CommandError, match=r"At most ¥50\.00"):
        call_command("refund", account=account.pk, amount="60", reference="t-2", reason="again")
    with pytest.raises(CommandError, match="Invalid amount"):
        call_command("refund", account=account.pk, amount="1.005", reference="t-3", reason="x")


# --- Tax ids and amounts in words -----------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "valid"),
    [
        (TAX_ID, True),
        ("911100007109288314", True),
        ("91350100M000100Y44", False),  # wrong check character
        ("91350100M000100Y4", False),  # 17 characters
        ("91350100M000100YI3", False),  # I is not in the alphabet
        ("", False),
    ],
)
def test_unified_social_credit_codes_are_checked(code, valid):
    assert uscc_valid(code) is valid


def test_tax_ids_are_normalised_and_foreign_ones_have_their_own_rule():
    assert clean_tax_id(" 91350100m000100y43 ", currency="CNY") == TAX_ID
    assert clean_tax_id("DE 123456789", currency="USD") == "DE123456789"
    with pytest.raises(ServiceError):
        clean_tax_id("<script>", currency="USD")


@pytest.mark.parametrize(
    ("units", "cents", "words"),
    [
        (100, 0, "壹佰元整"),
        (1_050, 50, "壹仟零伍拾元伍角"),
        (3, 8, "叁元零捌分"),
        (10_001, 0, "壹万零壹元整"),
        (100_010_000, 0, "壹亿零壹万元整"),
        (1_200_000, 0, "壹佰贰拾万元整"),
        (0, 50, "伍角"),
    ],
)
def test_amounts_read_in_chinese_capital_numerals(units, cents, words):
    assert amount_in_chinese(units * UNIT + cents * 10**7) == words
    assert amount_in_chinese(-(units * UNIT + cents * 10**7)) == "负" + words


# --- Invoices -------------------------------------------------------------------------------


def test_an_invoice_above_the_invoiceable_total_is_refused_and_changes_nothing():
    account = paid_account((100, 20))  # the bonus is not invoiceable
    with pytest.raises(ServiceError, match=r"At most ¥100\.00"):
        invoice_request(account=account, amount_nano=101 * UNIT, buyer=CHINESE_BUYER, actor=None)
    assert not Invoice.objects.exists() and not InvoiceSequence.objects.exists()


@pytest.mark.parametrize(
    "buyer",
    [
        Buyer(type="company", title="Acme", tax_id="91350100M000100Y44"),
        Buyer(type="company", title="Acme", tax_id=""),
        Buyer(type="company", title="", tax_id=TAX_ID),
        Buyer(type="company", title="x" * 101, tax_id=TAX_ID),
        Buyer(type="government", title="Acme", tax_id=TAX_ID),
    ],
)
def test_invalid_buyer_details_are_refused(buyer):
    account = paid_account((100, 0))
    with pytest.raises(ServiceError):
        invoice_request(account=account, amount_nano=10 * UNIT, buyer=buyer, actor=None)
    assert not Invoice.objects.exists()


def test_a_refund_lowers_the_invoiceable_total_and_an_individual_needs_no_tax_id():
    account = paid_account((100, 0))
    refund(account=account, amount_nano=30 * UNIT, reference="r", reason="x")
    assert paid_totals(account=account).invoiceable_nano == 70 * UNIT
    invoice = invoice_request(
        account=account,
        amount_nano=70 * UNIT,
        buyer=Buyer(type="individual", title="张三", tax_id="ignored"),
        actor=None,
    )
    assert invoice.buyer_tax_id == ""
    assert paid_totals(account=account).invoiceable_nano == 0


def test_a_void_issues_a_reversal_and_gives_the_amount_back():
    account = paid_account((100, 0))
    invoice = invoice_request(
        account=account, amount_nano=100 * UNIT, buyer=CHINESE_BUYER, actor=None
    )
    reversal = invoice_void(invoice=invoice, actor=None, reason="wrong title")
    assert (reversal.kind, reversal.amount_nano, reversal.reverses_id) == (
        "reversal",
        -100 * UNIT,
        invoice.pk,
    )
    assert int(reversal.number) == int(invoice.number) + 1
    assert paid_totals(account=account).invoiceable_nano == 100 * UNIT
    untouched = Invoice.objects.get(pk=invoice.pk)
    assert (untouched.amount_nano, untouched.number, untouched.kind) == (
        100 * UNIT,
        invoice.number,
        "invoice",
    )
    with pytest.raises(ServiceError, match="already"):
        invoice_void(invoice=invoice, actor=None, reason="again")
    with pytest.raises(ServiceError):
        invoice_void(invoice=reversal, actor=None, reason="a reversal of a reversal")
    assert AuditEvent.objects.filter(action="billing.invoice_void").count() == 1


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_16_concurrent_requests_get_gapless_unique_numbers():
    accounts = [paid_account((100, 0)) for _ in range(4)]

    def request(index):
        # Four threads per account asking ¥30 each: ¥100 allows three of them.
        invoice_request(
            account=accounts[index % 4], amount_nano=30 * UNIT, buyer=CHINESE_BUYER, actor=None
        )

    raised = run_together(request, 16)
    refused = [error for error in raised if isinstance(error, ServiceError)]
    assert refused == raised  # nothing but refusals
    assert len(refused) == 4, refused  # one per account: the invoiceable total held
    numbers = sorted(int(n) for n in Invoice.objects.values_list("number", flat=True))
    year = Invoice.objects.first().year
    assert numbers == [year * 10**8 + n for n in range(1, 13)]
    assert InvoiceSequence.objects.get(year=year).last_number == 12
    for account in accounts:
        assert paid_totals(account=account).invoiced_nano == 90 * UNIT


def test_the_invoice_pdf_holds_the_number_the_amount_and_a_chinese_buyer():
    account = paid_account((1_235, 0))
    invoice = invoice_request(
        account=account, amount_nano=1_234 * UNIT + 5 * 10**8, buyer=CHINESE_BUYER, actor=None
    )
    text = pdf_text(invoice_pdf(invoice))
    assert invoice.number in text
    assert "¥1,234.50" in text
    assert "北京智谱华章科技有限公司" in text
    assert TAX_ID in text
    assert "壹仟贰佰叁拾肆元伍角" in text


# Rendered in a child process: fontconfig reads FONTCONFIG_FILE once per process. The invoice
# is unsaved, so the child needs no database.
RENDER_WITHOUT_SYSTEM_FONTS = """
import sys
import django
django.setup()
from django.utils import timezone
from billing.documents import invoice_pdf
from billing.models import Invoice
invoice = Invoice(
    number="202600000042", kind="invoice", amount_nano=1_234_500_000_000, currency="CNY",
    buyer_title="北京智谱华章科技有限公司", buyer_tax_id="91350100M000100Y43", account_id=7,
    issued_at=timezone.now(), seller={"name": "示例科技有限公司", "tax_id": "X", "address": "北京"},
)
sys.stdout.buffer.write(invoice_pdf(invoice))
"""


def test_an_invoice_is_legible_on_a_machine_without_any_font(tmp_path):
    # A fresh machine has no fonts-noto-cjk: Chinese printed as blank boxes with no text layer
    # (pypdf then read neither the Chinese nor the English); with no system font at all, as
    # here, Pango crashed. The documents bring their own font.
    fonts_conf = tmp_path / "fonts.conf"
    fonts_conf.write_text(
        '<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "urn:fontconfig:fonts.dtd">'
        f"<fontconfig><cachedir>{tmp_path}</cachedir></fontconfig>"
    )
    env = {**os.environ, "FONTCONFIG_FILE": str(fonts_conf), "PYTHONPATH": str(ROOT)}
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    child = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", RENDER_WITHOUT_SYSTEM_FONTS],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr.decode(errors="replace")[-2000:]
    text = pdf_text(child.stdout)
    assert "电子发票 · Electronic invoice" in text
    assert "北京智谱华章科技有限公司" in text
    assert "¥1,234.50" in text and "壹仟贰佰叁拾肆元伍角" in text


def test_a_receipt_pdf_shows_what_was_paid_and_the_bonus_apart():
    account = funded_account()
    payment = payment_start_card(
        account=account, amount_nano=1_000 * UNIT, payment_method=add_card(account), actor=None
    )
    receipt = receipt_for(entry=payment.ledger_entry)
    assert (receipt.paid_nano, receipt.bonus_nano, receipt.method) == (
        1_000 * UNIT,
        50 * UNIT,
        "card",
    )
    text = pdf_text(receipt_pdf(receipt, account))
    assert receipt.number in text and "¥1,000.00" in text and "¥50.00" in text
