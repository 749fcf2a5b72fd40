"""Reads of money: month-to-date spend from the counter rows (zero where none exist)."""

import zoneinfo
from datetime import date, datetime

from django.utils import timezone

from billing.models import AccountMonthSpend, ProjectMonthSpend
from console.models import Account


def current_month(*, account: Account, now: datetime | None = None) -> date:
    """The first day of the calendar month that `now` falls in, in the account's time zone."""
    local = (now or timezone.now()).astimezone(zoneinfo.ZoneInfo(account.time_zone))
    return local.date().replace(day=1)


def project_month_spend(*, account: Account, month: date | None = None) -> dict[int, int]:
    month = month or current_month(account=account)
    rows = ProjectMonthSpend.objects.filter(account=account, month=month)
    return dict(rows.values_list("project_id", "spent_nano"))


def account_month_spend(*, account: Account, month: date | None = None) -> int:
    month = month or current_month(account=account)
    row = AccountMonthSpend.objects.filter(account=account, month=month).first()
    return row.spent_nano if row else 0
