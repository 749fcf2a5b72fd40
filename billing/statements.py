"""Monthly statements: consumption by project and model, and the money that moved.

Everything comes from the ledger (the one truth about money), over the calendar month in
the account's time zone, bounded where a neighbouring month was already stated
(`billing.selectors.account_months`: a time-zone change never leaves a charge out of every
statement or puts it in two). A closed month's statement is stored once as a snapshot (by the
job on the 1st, or on demand); the current month can be downloaded "so far", computed on
each request and never stored.
"""

import csv
import io
import zoneinfo
from collections import defaultdict
from datetime import date, datetime

from django.db import IntegrityError, transaction
from django.db.models import BigIntegerField, Count, F, Q, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.utils import timezone

from billing.models import LedgerEntry, PackConsumption, Statement
from billing.selectors import (
    account_months,
    current_month,
    month_bounds,
    next_month,
    previous_month,
)
from billing.services import wallet_lock
from console.models import Account
from console.money import decimal_string
from console.spreadsheet import csv_cell
from projects.models import Project


def _balance_before(account: Account, at: datetime) -> dict[str, int]:
    sums = LedgerEntry.objects.filter(account=account, created_at__lt=at).aggregate(
        recharge=Sum("recharge_delta_nano"),
        bonus=Sum("bonus_delta_nano"),
        arrears=Sum("arrears_delta_nano"),
    )
    return {name: value or 0 for name, value in sums.items()}


def _card_plans(entries) -> int | None:
    """Coding plans paid by card in the month, less what was paid back to the card; None
    when there were none. They move nothing in the wallet (the wallet's lines reconcile
    without them): the statement shows them beside it, for information."""
    card = entries.filter(
        kind__in=(LedgerEntry.Kind.PLAN_PURCHASE, LedgerEntry.Kind.PLAN_REFUND),
        metadata__method="card",
    ).aggregate(
        count=Count("pk"),
        paid=Sum("fee_nano", filter=Q(kind=LedgerEntry.Kind.PLAN_PURCHASE)),
        returned=Sum(
            Cast(KT("metadata__returned_nano"), BigIntegerField()),
            filter=Q(kind=LedgerEntry.Kind.PLAN_REFUND),
        ),
    )
    if not card["count"]:
        return None
    return (card["paid"] or 0) - (card["returned"] or 0)


def statement_data(*, account: Account, month: date) -> dict:
    """The statement's contents as plain JSON values (integers of nano, token counts)."""
    start, end = account_months(account=account).bounds(month)
    entries = LedgerEntry.objects.filter(account=account, created_at__gte=start, created_at__lt=end)
    charges = entries.filter(kind=LedgerEntry.Kind.CHARGE)
    rows = {}
    for row in charges.values("project_id", "model").annotate(
        requests=Count("pk"),
        input_tokens=Sum("input_tokens"),
        output_tokens=Sum("output_tokens"),
        fee_nano=Sum("fee_nano"),
        recharge_nano=Sum(-F("recharge_delta_nano")),
        bonus_nano=Sum(-F("bonus_delta_nano")),
        arrears_nano=Sum("arrears_delta_nano"),
    ):
        rows[(row["project_id"], row["model"])] = {**row, "pack_tokens": 0}
    for line in (
        PackConsumption.objects.filter(entry__in=charges)
        .values(project_id=F("entry__project_id"), model=F("entry__model"))
        .annotate(tokens=Sum(F("input_tokens") + F("output_tokens")))
    ):
        rows[(line["project_id"], line["model"])]["pack_tokens"] += line["tokens"]
    names = dict(
        Project.objects.filter(pk__in={key[0] for key in rows if key[0]}).values_list("pk", "name")
    )
    lines = sorted(
        (
            {
                "project": names.get(row["project_id"], ""),
                "project_id": row["project_id"],
                "model": row["model"],
                "requests": row["requests"],
                "input_tokens": row["input_tokens"],
                "output_tokens": row["output_tokens"],
                "pack_tokens": row["pack_tokens"],
                "fee_nano": row["fee_nano"],
                "recharge_nano": row["recharge_nano"],
                "bonus_nano": row["bonus_nano"],
                "arrears_nano": row["arrears_nano"],
            }
            for row in rows.values()
        ),
        key=lambda line: (line["project"], line["model"]),
    )
    totals = {
        key: sum(line[key] for line in lines)
        for key in (
            "requests",
            "input_tokens",
            "output_tokens",
            "pack_tokens",
            "fee_nano",
            "recharge_nano",
            "bonus_nano",
            "arrears_nano",
        )
    }
    movements = defaultdict(int)
    for kind, recharge, bonus, arrears in entries.values_list(
        "kind", "recharge_delta_nano", "bonus_delta_nano", "arrears_delta_nano"
    ):
        if kind == LedgerEntry.Kind.RECHARGE:
            movements["recharges_nano"] += recharge - arrears
        elif kind == LedgerEntry.Kind.BONUS_GRANT:
            movements["bonus_granted_nano"] += bonus - arrears
        elif kind == LedgerEntry.Kind.PACK_PURCHASE:
            movements["pack_purchases_nano"] += -(recharge + bonus)
        elif kind in (LedgerEntry.Kind.PLAN_PURCHASE, LedgerEntry.Kind.PLAN_REFUND):
            # Plan purchases net of plan refunds (a refund gives back part of a purchase).
            movements["plan_purchases_nano"] += -(recharge + bonus - arrears)
        elif kind == LedgerEntry.Kind.REFUND:
            movements["refunds_nano"] += -recharge
            movements["bonus_clawed_back_nano"] += -bonus
    opening, closing = _balance_before(account, start), _balance_before(account, end)
    money_movements = {
        key: movements[key]
        for key in (
            "recharges_nano",
            "bonus_granted_nano",
            "pack_purchases_nano",
            "plan_purchases_nano",
            "refunds_nano",
            "bonus_clawed_back_nano",
        )
    }
    card_plans = _card_plans(entries)
    if card_plans is not None:
        # Only in a month that has one, so statements made before keep their layout.
        money_movements["card_plans_nano"] = card_plans
    return {
        "account": account.name,
        "account_id": account.pk,
        "currency": account.currency,
        "month": month.isoformat(),
        "time_zone": account.time_zone,
        "starts_at": start.isoformat(),
        "ends_at": end.isoformat(),
        "lines": lines,
        "totals": totals,
        "movements": money_movements,
        "opening": opening,
        "closing": closing,
    }


def statement_generate(
    *, account: Account, month: date, now: datetime | None = None
) -> tuple[Statement, bool]:
    """Store a closed month's statement (once: a second call returns the first).

    Under the wallet lock, with the account read again under it: a time-zone change takes
    the same lock (portal.services.account_update), so a statement is stored either before
    the change (which then keeps its bounds) or after it (in the new zone's months), never
    with the old zone's bounds after the counters moved to the new one."""
    existing = Statement.objects.filter(account=account, month=month).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            wallet_lock(account)
            account = Account.objects.get(pk=account.pk)
            if month >= current_month(account=account, now=now):
                raise ValueError("only a month that has ended gets a stored statement")
            return (
                Statement.objects.create(
                    account=account,
                    month=month,
                    currency=account.currency,
                    data=statement_data(account=account, month=month),
                    generated_at=now or timezone.now(),
                ),
                True,
            )
    except IntegrityError:
        return Statement.objects.get(account=account, month=month), False


def statement_months(*, account: Account, now: datetime | None = None) -> list[date]:
    """Every month from the account's creation to now, newest first."""
    first = current_month(account=account, now=account.created_at)
    month, last, months = first, current_month(account=account, now=now), []
    while month <= last:
        months.append(month)
        month = next_month(month)
    return months[::-1]


def statements_generate_due(*, now: datetime | None = None) -> int:
    """The job on the 1st: each account's last closed month, in its own time zone. It runs
    hourly, so every zone's 1st is reached within the hour; per time zone, only accounts
    that existed in that month and have no statement for it are visited."""
    now = now or timezone.now()
    made = 0
    for zone_name in Account.objects.values_list("time_zone", flat=True).distinct():
        local = now.astimezone(zoneinfo.ZoneInfo(zone_name)).date()
        month = previous_month(local.replace(day=1))
        _start, month_end = month_bounds(time_zone=zone_name, month=month)
        due = Account.objects.filter(time_zone=zone_name, created_at__lt=month_end).exclude(
            pk__in=Statement.objects.filter(month=month).values("account_id")
        )
        for account in due.iterator():
            _statement, created = statement_generate(account=account, month=month, now=now)
            made += created
    return made


CSV_COLUMNS = (
    "project",
    "model",
    "requests",
    "input_tokens",
    "output_tokens",
    "pack_tokens",
    "fee",
    "from_recharge",
    "from_bonus",
    "arrears",
)


def statement_csv(data: dict) -> str:
    """One row per project and model, then a total row; amounts with 9 decimals."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(("month", "currency", *CSV_COLUMNS))

    def amounts(line):
        return (
            decimal_string(line["fee_nano"]),
            decimal_string(line["recharge_nano"]),
            decimal_string(line["bonus_nano"]),
            decimal_string(line["arrears_nano"]),
        )

    for line in data["lines"]:
        writer.writerow(
            (
                data["month"][:7],
                data["currency"],
                csv_cell(line["project"]),
                csv_cell(line["model"]),
                line["requests"],
                line["input_tokens"],
                line["output_tokens"],
                line["pack_tokens"],
                *amounts(line),
            )
        )
    totals = data["totals"]
    writer.writerow(
        (
            data["month"][:7],
            data["currency"],
            "TOTAL",
            "",
            totals["requests"],
            totals["input_tokens"],
            totals["output_tokens"],
            totals["pack_tokens"],
            *amounts(totals),
        )
    )
    return out.getvalue()
