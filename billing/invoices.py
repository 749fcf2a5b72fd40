"""Tax invoices (发票) and their reversals (receipts are in billing/receipts.py).

Finance requests an invoice for up to the invoiceable total (paid recharges and coding
plans paid by card − refunds − already invoiced: `billing.selectors.paid_totals`). Numbers
are gapless per calendar year: the year's counter row is locked, incremented and used in
the same transaction that inserts the invoice, so a request that fails rolls its number back
with it. An issued invoice is never edited; staff void one by issuing a reversal (红字发票)
with its own number and the negative amount.
"""

import re
import zoneinfo
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from billing.models import BillingProfile, Invoice, InvoiceSequence
from billing.selectors import paid_totals
from billing.services import wallet_lock
from console.models import Account, AuditEvent, User
from console.money import format_amount
from console.services import ServiceError, audit_record

# --- Buyer details --------------------------------------------------------------------------

# GB 32100-2015, the unified social credit code (统一社会信用代码): 18 characters from this
# alphabet (no I, O, S, V, Z), the last a check character over the first 17.
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_FOREIGN_TAX_ID = re.compile(r"[A-Z0-9][A-Z0-9-]{2,18}[A-Z0-9]")


def uscc_valid(code: str) -> bool:
    if len(code) != 18 or any(ch not in USCC_ALPHABET for ch in code):
        return False
    total = sum(
        USCC_ALPHABET.index(ch) * weight for ch, weight in zip(code[:17], USCC_WEIGHTS, strict=True)
    )
    return code[17] == USCC_ALPHABET[(31 - total % 31) % 31]


def clean_tax_id(tax_id: str, *, currency: str) -> str:
    """Upper-cased and checked: a Chinese unified social credit code for CNY accounts, a
    VAT or tax number (4 to 20 letters, digits and hyphens) for others."""
    cleaned = "".join((tax_id or "").split()).upper()
    if currency == "CNY":
        if not uscc_valid(cleaned):
            raise ServiceError(
                _(
                    "Enter the buyer's unified social credit code: 18 characters, "
                    "as on the business licence (the last one is a check character)."
                )
            )
    elif not _FOREIGN_TAX_ID.fullmatch(cleaned):
        raise ServiceError(_("Enter the tax number: 4 to 20 letters, digits or hyphens."))
    return cleaned


@dataclass(frozen=True)
class Buyer:
    type: str
    title: str
    tax_id: str = ""
    address: str = ""
    phone: str = ""
    bank_name: str = ""
    bank_account: str = ""

    @classmethod
    def from_profile(cls, profile: BillingProfile) -> "Buyer":
        return cls(
            type=profile.buyer_type,
            title=profile.invoice_title,
            tax_id=profile.tax_id,
            address=profile.address,
            phone=profile.phone,
            bank_name=profile.bank_name,
            bank_account=profile.bank_account,
        )

    @classmethod
    def from_invoice(cls, invoice: Invoice) -> "Buyer":
        return cls(
            type=invoice.buyer_type,
            title=invoice.buyer_title,
            tax_id=invoice.buyer_tax_id,
            address=invoice.buyer_address,
            phone=invoice.buyer_phone,
            bank_name=invoice.buyer_bank_name,
            bank_account=invoice.buyer_bank_account,
        )


def _issue(
    *,
    account: Account,
    kind: str,
    amount_nano: int,
    currency: str,
    buyer: Buyer,
    seller: dict,
    actor: User | None,
    reverses: Invoice | None = None,
    reason: str = "",
) -> Invoice:
    """Insert an invoice or a reversal under the next number of the year (the caller holds
    the account's wallet lock; the number's lock is held to commit)."""
    now = timezone.now()
    year, sequence, number = _next_number(now)
    return Invoice.objects.create(
        account=account,
        kind=kind,
        number=number,
        year=year,
        sequence=sequence,
        amount_nano=amount_nano,
        currency=currency,
        buyer_type=buyer.type,
        buyer_title=buyer.title,
        buyer_tax_id=buyer.tax_id,
        buyer_address=buyer.address,
        buyer_phone=buyer.phone,
        buyer_bank_name=buyer.bank_name,
        buyer_bank_account=buyer.bank_account,
        seller=seller,
        reverses=reverses,
        reason=reason[:200],
        requested_by=actor,
        issued_at=now,
    )


def clean_buyer(buyer: Buyer, *, currency: str) -> Buyer:
    """A company needs its title and tax id; an individual their name and no tax id."""
    title = " ".join((buyer.title or "").split())
    if not title or len(title) > 100:
        raise ServiceError(_("Enter the invoice title (the buyer's name), up to 100 characters."))
    if buyer.type == BillingProfile.BuyerType.COMPANY:
        tax_id = clean_tax_id(buyer.tax_id, currency=currency)
    elif buyer.type == BillingProfile.BuyerType.INDIVIDUAL:
        tax_id = ""
    else:
        raise ServiceError(_("Choose company or individual."))
    return Buyer(
        type=buyer.type,
        title=title,
        tax_id=tax_id,
        address=buyer.address.strip(),
        phone=buyer.phone.strip(),
        bank_name=buyer.bank_name.strip(),
        bank_account=buyer.bank_account.strip(),
    )


def billing_profile_update(
    *, account: Account, buyer: Buyer, invoice_email: str, actor: User | None, ip=None
) -> BillingProfile:
    """Save the invoice details offered by default on the next request."""
    buyer = clean_buyer(buyer, currency=account.currency)
    with transaction.atomic():
        BillingProfile.objects.get_or_create(account=account)
        profile = BillingProfile.objects.select_for_update().get(account=account)
        values = {
            "buyer_type": buyer.type,
            "invoice_title": buyer.title,
            "tax_id": buyer.tax_id,
            "address": buyer.address,
            "phone": buyer.phone,
            "bank_name": buyer.bank_name,
            "bank_account": buyer.bank_account,
            "invoice_email": invoice_email,
        }
        changes = [field for field, value in values.items() if getattr(profile, field) != value]
        if not changes:
            return profile
        for field in changes:
            setattr(profile, field, values[field])
        profile.save(update_fields=changes)
        audit_record(
            action="billing.invoice_details_update",
            account=account,
            actor=actor,
            target=profile,
            ip=ip,
            metadata={"fields": changes},
        )
    return profile


# --- Invoices -------------------------------------------------------------------------------


def _next_number(now) -> tuple[int, int, str]:
    """The next number of the invoice year, under the year row's lock (held to commit)."""
    year = now.astimezone(zoneinfo.ZoneInfo(settings.INVOICE_TIME_ZONE)).year
    InvoiceSequence.objects.get_or_create(year=year)
    sequence = InvoiceSequence.objects.select_for_update().get(year=year)
    sequence.last_number += 1
    sequence.save(update_fields=["last_number"])
    return year, sequence.last_number, f"{year}{sequence.last_number:08d}"


def invoice_request(
    *,
    account: Account,
    amount_nano: int,
    buyer: Buyer,
    actor: User | None,
    ip: str | None = None,
) -> Invoice:
    """Issue an electronic invoice for up to the invoiceable total."""
    buyer = clean_buyer(buyer, currency=account.currency)
    if amount_nano <= 0:
        raise ServiceError(_("The amount must be more than zero."))
    with transaction.atomic():
        # Serialises this account's invoices and refunds: two requests cannot both take
        # the same invoiceable money. Lock order: wallet, then the year's number.
        wallet_lock(account)
        invoiceable = paid_totals(account=account).invoiceable_nano
        if amount_nano > invoiceable:
            raise ServiceError(
                _(
                    "At most %(amount)s can be invoiced: paid recharges and coding plans "
                    "paid by card, less refunds and invoices."
                )
                % {"amount": format_amount(invoiceable, account.currency)}
            )
        invoice = _issue(
            account=account,
            kind=Invoice.Kind.INVOICE,
            amount_nano=amount_nano,
            currency=account.currency,
            buyer=buyer,
            seller=dict(settings.SELLER),
            actor=actor,
        )
        audit_record(
            action="billing.invoice_issue",
            account=account,
            actor=actor,
            target=invoice,
            ip=ip,
            metadata={"number": invoice.number, "amount_nano": amount_nano},
        )
    return invoice


def invoice_void(*, invoice: Invoice, actor: User | None, reason: str) -> Invoice:
    """Staff: void an issued invoice with a reversal of the whole amount. Returns the
    reversal. The original row is not touched."""
    reason = (reason or "").strip()
    if not reason:
        raise ServiceError(_("Give a reason for voiding the invoice."))
    if invoice.kind != Invoice.Kind.INVOICE:
        raise ServiceError(_("A reversal cannot be voided."))
    account = invoice.account
    with transaction.atomic():
        wallet_lock(account)
        if Invoice.objects.filter(reverses=invoice).exists():
            raise ServiceError(_("This invoice has been voided already."))
        reversal = _issue(
            account=account,
            kind=Invoice.Kind.REVERSAL,
            amount_nano=-invoice.amount_nano,
            currency=invoice.currency,
            buyer=Buyer.from_invoice(invoice),
            seller=invoice.seller,
            actor=actor,
            reverses=invoice,
            reason=reason,
        )
        audit_record(
            action="billing.invoice_void",
            account=account,
            actor=actor,
            actor_kind=AuditEvent.ActorKind.STAFF,
            target=invoice,
            reason=reason,
            metadata={"number": invoice.number, "reversal": reversal.number},
        )
    return reversal


def invoice_list(*, account: Account):
    return (
        Invoice.objects.filter(account=account)
        .select_related("reverses", "reversal", "requested_by")
        .order_by("-issued_at", "-pk")
    )


# --- Amounts in words -----------------------------------------------------------------------

_DIGITS = "零壹贰叁肆伍陆柒捌玖"
_SMALL_UNITS = ("", "拾", "佰", "仟")
_GROUP_UNITS = ("", "万", "亿", "万亿")


def _integer_words(number: int) -> str:
    if number == 0:
        return "零"
    groups = []
    while number:
        groups.append(number % 10_000)
        number //= 10_000
    words, skipped_zero = "", False
    for index in reversed(range(len(groups))):
        group = groups[index]
        if group == 0:
            skipped_zero = bool(words)
            continue
        # A zero between groups is read once: 壹万零壹 (10,001), 壹亿零壹万 (100,010,000).
        if words and (skipped_zero or group < 1000):
            words += "零"
        skipped_zero, inner_zero, text = False, False, ""
        for position in (3, 2, 1, 0):
            digit = group // 10**position % 10
            if digit == 0:
                inner_zero = bool(text)
                continue
            if inner_zero:
                text += "零"
                inner_zero = False
            text += _DIGITS[digit] + _SMALL_UNITS[position]
        words += text + _GROUP_UNITS[index]
    return words


def amount_in_chinese(nano: int) -> str:
    """The capital-numeral amount of Chinese invoices (大写), from whole cents:
    壹佰元整, 壹仟零伍拾元伍角, 叁元零捌分. Negative amounts (reversals) read 负…."""
    cents = (abs(nano) + 5_000_000) // 10_000_000
    yuan, jiao, fen = cents // 100, cents // 10 % 10, cents % 10
    words = "负" if nano < 0 else ""
    if yuan or not (jiao or fen):
        words += _integer_words(yuan) + "元"
    if not jiao and not fen:
        return words + "整"
    if jiao:
        words += _DIGITS[jiao] + "角"
    elif yuan:
        words += "零"
    if fen:
        words += _DIGITS[fen] + "分"
    return words
