"""Reads for the Account admin: the list's balances and month-to-date spend in one query, and
the summary block of an account's page (nothing secret: keys by their mask)."""

from datetime import date

from django.db.models import (
    Case,
    DateField,
    F,
    IntegerField,
    OuterRef,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.template.loader import render_to_string
from django.utils import timezone

from billing.models import AccountMonthSpend, Invoice, LedgerEntry, Payment
from billing.selectors import balance, current_month, next_month
from console.models import Account
from keys.models import ApiKey
from projects.models import Project
from usage.selectors import Metrics, rollup_sums


def _current_month_by_zone() -> Case:
    """Each account's current month in its own time zone, as an SQL expression: the zones in
    use, grouped by the month it is there now (at most two groups, around midnight)."""
    now = timezone.now()
    zones_by_month: dict[date, list[str]] = {}
    for zone in Account.objects.values_list("time_zone", flat=True).distinct():
        zones_by_month.setdefault(
            current_month(account=Account(time_zone=zone), now=now), []
        ).append(zone)
    whens = [
        When(time_zone__in=zones, then=Value(month)) for month, zones in zones_by_month.items()
    ]
    return Case(*whens, default=Value(None), output_field=DateField())


def with_money(queryset: QuerySet) -> QuerySet:
    spend = AccountMonthSpend.objects.filter(
        account=OuterRef("pk"), month=OuterRef("current_month")
    ).values("spent_nano")[:1]
    return queryset.annotate(
        recharge_nano=F("wallet__recharge_nano"),
        bonus_nano=F("wallet__bonus_nano"),
        arrears_nano=F("wallet__arrears_nano"),
        current_month=_current_month_by_zone(),
        month_spend_nano=Coalesce(Subquery(spend), Value(0), output_field=IntegerField()),
    )


def summary_html(account: Account, *, may_revoke: bool = False) -> str:
    month = current_month(account=account)
    # This month's usage from the daily roll-ups (the records can be millions).
    usage_totals = Metrics()
    for _bucket, _group, metrics in rollup_sums(
        account=account, bucket="month", start=month, end=next_month(month)
    ):
        usage_totals.add(metrics)
    return render_to_string(
        "admin/console/account/summary.html",
        {
            "account": account,
            "balance": balance(account=account),
            "month": month,
            "may_revoke": may_revoke,
            "usage_requests": usage_totals.requests,
            "usage": usage_totals,
            "projects": Project.objects.filter(account=account).order_by("created_at", "pk"),
            "keys": ApiKey.objects.filter(account=account)
            .select_related("project")
            .order_by("-created_at", "-pk"),
            "ledger": LedgerEntry.objects.filter(account=account).order_by("-created_at", "-pk")[
                :20
            ],
            "payments": Payment.objects.filter(account=account).order_by("-created_at", "-pk")[:20],
            "invoices": Invoice.objects.filter(account=account).order_by("-issued_at", "-pk")[:20],
            "now": timezone.now(),
        },
    )
