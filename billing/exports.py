"""Finance exports for staff: one calendar month across accounts, as CSV rows.

A month is each account's calendar month in its own time zone (as its statements and its
month-to-date spend are), so the rows of one account add up to its own ledger for that month.
Amounts are decimal strings with 9 decimals; text people typed is kept from running as a
spreadsheet formula.
"""

from datetime import date

from django.db.models import Count, Q, Sum
from django.utils.translation import gettext_lazy as _

from billing.models import Invoice, LedgerEntry, Payment
from billing.selectors import month_bounds
from console.models import Account
from console.money import decimal_string
from console.spreadsheet import csv_cell

KINDS = {
    "recharges": _("Recharges"),
    "refunds": _("Refunds"),
    "invoices": _("Invoices"),
    "consumption": _("Consumption"),
}


def _in_month(month: date, field: str) -> Q:
    """Rows whose `field` falls in `month`, each account's month in its own time zone."""
    condition = Q(pk__in=[])
    for time_zone in Account.objects.values_list("time_zone", flat=True).distinct():
        start, end = month_bounds(time_zone=time_zone, month=month)
        condition |= Q(
            account__time_zone=time_zone, **{f"{field}__gte": start, f"{field}__lt": end}
        )
    return condition


def _recharges(month: date) -> list[list]:
    rows = [
        [
            "account_id",
            "account",
            "reference",
            "method",
            "provider",
            "currency",
            "amount",
            "promotion_bonus",
            "settled_at",
        ]
    ]
    payments = (
        Payment.objects.filter(_in_month(month, "settled_at"), status=Payment.Status.SUCCEEDED)
        .select_related("account")
        .order_by("settled_at", "pk")
    )
    for payment in payments:
        rows.append(
            [
                payment.account_id,
                csv_cell(payment.account.name),
                csv_cell(payment.reference),
                payment.method,
                csv_cell(payment.provider),
                payment.currency,
                decimal_string(payment.amount_nano),
                decimal_string(payment.bonus_nano),
                payment.settled_at.isoformat(),
            ]
        )
    return rows


def _refunds(month: date) -> list[list]:
    rows = [
        [
            "account_id",
            "account",
            "reference",
            "currency",
            "amount",
            "bonus_clawback",
            "reason",
            "created_at",
        ]
    ]
    entries = (
        LedgerEntry.objects.filter(_in_month(month, "created_at"), kind=LedgerEntry.Kind.REFUND)
        .select_related("account")
        .order_by("created_at", "pk")
    )
    for entry in entries:
        rows.append(
            [
                entry.account_id,
                csv_cell(entry.account.name),
                csv_cell(entry.reference),
                entry.account.currency,
                decimal_string(-entry.recharge_delta_nano),
                decimal_string(-entry.bonus_delta_nano),
                csv_cell(entry.metadata.get("reason", "")),
                entry.created_at.isoformat(),
            ]
        )
    return rows


def _invoices(month: date) -> list[list]:
    rows = [
        [
            "number",
            "kind",
            "reverses",
            "account_id",
            "account",
            "currency",
            "amount",
            "buyer",
            "buyer_tax_id",
            "reason",
            "issued_at",
        ]
    ]
    invoices = (
        Invoice.objects.filter(_in_month(month, "issued_at"))
        .select_related("account", "reverses")
        .order_by("issued_at", "pk")
    )
    for invoice in invoices:
        rows.append(
            [
                invoice.number,
                invoice.kind,
                invoice.reverses.number if invoice.reverses else "",
                invoice.account_id,
                csv_cell(invoice.account.name),
                invoice.currency,
                decimal_string(invoice.amount_nano),
                csv_cell(invoice.buyer_title),
                csv_cell(invoice.buyer_tax_id),
                csv_cell(invoice.reason),
                invoice.issued_at.isoformat(),
            ]
        )
    return rows


def _consumption(month: date) -> list[list]:
    rows = [
        [
            "account_id",
            "account",
            "currency",
            "charges",
            "fee",
            "recharge_part",
            "bonus_part",
            "arrears_part",
        ]
    ]
    totals = (
        LedgerEntry.objects.filter(_in_month(month, "created_at"), kind=LedgerEntry.Kind.CHARGE)
        .values("account_id", "account__name", "account__currency")
        .annotate(
            charges=Count("pk"),
            fee=Sum("fee_nano"),
            recharge=Sum("recharge_delta_nano"),
            bonus=Sum("bonus_delta_nano"),
            arrears=Sum("arrears_delta_nano"),
        )
        .order_by("account_id")
    )
    for row in totals:
        rows.append(
            [
                row["account_id"],
                csv_cell(row["account__name"]),
                row["account__currency"],
                row["charges"],
                decimal_string(row["fee"]),
                decimal_string(-row["recharge"]),
                decimal_string(-row["bonus"]),
                decimal_string(row["arrears"]),
            ]
        )
    return rows


def finance_export_rows(*, kind: str, month: date) -> list[list]:
    """The header and rows of one export (`kind` is one of KINDS)."""
    return {
        "recharges": _recharges,
        "refunds": _refunds,
        "invoices": _invoices,
        "consumption": _consumption,
    }[kind](month)
