"""Reads of usage: the usage page, the usage and cost API, the overview. Every figure comes
from the roll-ups (`UsageHourly`, `UsageDaily`), never from the usage records, so a page
costs the same at ten thousand records as at a million.

Days are calendar days in the account's time zone (as caps and statements); hours are UTC.
"""

import zoneinfo
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import urlencode

from django.db.models import F, Sum
from django.db.models.functions import TruncMonth
from django.utils.translation import gettext as _

from billing.selectors import next_month
from console.models import Account
from console.money import decimal_string
from console.spreadsheet import csv_cell
from keys.models import ApiKey
from projects.models import Project
from usage.models import UsageDaily, UsageHourly, UsageRecord

# The dimensions one can group by: the name people use → the roll-up column.
GROUP_COLUMNS = {
    "model": "model",
    "project": "project_id",
    "key": "api_key_id",
    "endpoint": "endpoint",
}
# The endpoints a filter may name (UsageRecord.Endpoint's values).
ENDPOINTS = tuple(UsageRecord.Endpoint.values)
PAGE_BUCKETS = ("day", "month")
DEFAULT_DAYS = 30
# The widest range a page or the API reads at once (a year of days, plus today).
MAX_DAYS = 366


@dataclass
class Metrics:
    """Sums over some roll-up rows. Money in nano of the account currency."""

    requests: int = 0
    refused: int = 0
    upstream_errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    pack_tokens: int = 0
    fee_nano: int = 0
    recharge_nano: int = 0
    bonus_nano: int = 0
    arrears_nano: int = 0

    def add(self, other: "Metrics") -> None:
        for name in METRIC_NAMES:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def errors(self) -> int:
        return self.refused + self.upstream_errors

    @property
    def succeeded(self) -> int:
        return self.requests - self.errors

    @property
    def error_rate_percent(self) -> float:
        """For display and charts only (a ratio, not money)."""
        return round(100 * self.errors / self.requests, 1) if self.requests else 0.0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


METRIC_NAMES = tuple(f.name for f in fields(Metrics))
_SUMS = {f"sum_{name}": Sum(name) for name in METRIC_NAMES}


def _metrics(row: dict) -> Metrics:
    return Metrics(**{name: row[f"sum_{name}"] or 0 for name in METRIC_NAMES})


def local_today(account: Account, now: datetime) -> date:
    return now.astimezone(zoneinfo.ZoneInfo(account.time_zone)).date()


def day_start(account: Account, day: date) -> datetime:
    """The first instant of `day` in the account's time zone."""
    return datetime.combine(day, time.min, tzinfo=zoneinfo.ZoneInfo(account.time_zone))


def daily_fees(*, account: Account, last: date, days: int) -> list[tuple[date, int]]:
    """(day, fee in nano) for each of the `days` calendar days (the account's) up to and
    including `last`, oldest first, zero on a day without spend: the overview's sparkline
    and burn rate, the spike alert's week. One query on the daily roll-ups."""
    first = last - timedelta(days=days - 1)
    fees = dict(
        UsageDaily.objects.filter(account=account, day__gte=first, day__lte=last)
        .values("day")
        .annotate(fee=Sum("fee_nano"))
        .values_list("day", "fee")
        .order_by()
    )
    every_day = (first + timedelta(days=offset) for offset in range(days))
    return [(day, fees.get(day) or 0) for day in every_day]


# --- The query -----------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageQuery:
    start: date  # first day, inclusive (account-local)
    end: date  # last day, inclusive
    group_by: str = "model"  # a key of GROUP_COLUMNS, or "" for no grouping
    bucket: str = "day"  # "day" or "month"
    project_id: int | None = None
    api_key_id: int | None = None
    endpoint: str = ""  # one of ENDPOINTS, or "" for every endpoint

    def as_params(self, **changes) -> dict:
        """The query string that reproduces this query (links, CSV export)."""
        values = {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "group": self.group_by,
            "bucket": self.bucket,
            "project": self.project_id or "",
            "key": self.api_key_id or "",
            "endpoint": self.endpoint,
        }
        values.update(changes)
        return {name: value for name, value in values.items() if value not in ("", None)}

    @property
    def querystring(self) -> str:
        return urlencode(self.as_params())


PAGE_PARAMETERS = {"start", "end", "group", "bucket", "project", "key", "endpoint"}


# Dates outside these are not usage anyone has: they fall back like malformed ones (and keep
# date arithmetic far from year 1 and year 9999).
EARLIEST_DAY = date(2000, 1, 1)
LATEST_DAYS_AHEAD = 366


def _parse_day(text: str, *, today: date) -> date | None:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return None
    return day if EARLIEST_DAY <= day <= today + timedelta(days=LATEST_DAYS_AHEAD) else None


def parse_id(text: str) -> int | None:
    """A database id from a query string: ASCII digits only ("²".isdigit() is true, and
    int() refuses it), within a 64-bit column."""
    if not (text.isascii() and text.isdigit() and len(text) <= 19):
        return None
    value = int(text)
    return value if 0 < value < 2**63 else None


def usage_query_parse(params, *, account: Account, now: datetime) -> tuple[UsageQuery, list[str]]:
    """The usage page's query from its GET parameters. Whatever is unknown or malformed
    falls back to its default, with a message saying so (never an error page)."""
    notes: list[str] = []
    today = local_today(account, now)
    unknown = sorted(set(params) - PAGE_PARAMETERS)
    if unknown:
        notes.append(_("Ignored unknown parameters: %(names)s.") % {"names": ", ".join(unknown)})
    end = today
    if params.get("end"):
        end = _parse_day(params["end"], today=today) or today
        if end == today and params["end"] != today.isoformat():
            notes.append(_("The end date is not a date (YYYY-MM-DD): showing up to today."))
    start = end - timedelta(days=DEFAULT_DAYS - 1)
    if params.get("start"):
        parsed = _parse_day(params["start"], today=today)
        if parsed is None:
            notes.append(_("The start date is not a date (YYYY-MM-DD): showing 30 days."))
        else:
            start = parsed
    if start > end:
        notes.append(_("The start date was after the end date: they were swapped."))
        start, end = end, start
    if (end - start).days + 1 > MAX_DAYS:
        start = end - timedelta(days=MAX_DAYS - 1)
        notes.append(_("At most 366 days are shown at once: the range was shortened."))
    group_by = params.get("group", "model")
    if group_by not in (*GROUP_COLUMNS, "none"):
        notes.append(_("Unknown grouping: grouped by model."))
        group_by = "model"
    bucket = params.get("bucket", "day")
    if bucket not in PAGE_BUCKETS:
        notes.append(_("Unknown interval: shown by day."))
        bucket = "day"
    project_id = api_key_id = None
    if params.get("project"):
        project_id = parse_id(params["project"])
        if (
            project_id is None
            or not Project.objects.filter(account=account, pk=project_id).exists()
        ):
            # The same words for another account's project as for none: nothing is revealed.
            notes.append(_("No such project: showing every project."))
            project_id = None
    if params.get("key"):
        api_key_id = parse_id(params["key"])
        keys = ApiKey.objects.filter(account=account, pk=api_key_id)
        if api_key_id is None or not keys.exists():
            notes.append(_("No such API key: showing every key."))
            api_key_id = None
    endpoint = params.get("endpoint", "")
    if endpoint and endpoint not in ENDPOINTS:
        notes.append(_("No such endpoint: showing every endpoint."))
        endpoint = ""
    query = UsageQuery(
        start=start,
        end=end,
        group_by="" if group_by == "none" else group_by,
        bucket=bucket,
        project_id=project_id,
        api_key_id=api_key_id,
        endpoint=endpoint,
    )
    return query, notes


# --- Sums ----------------------------------------------------------------------------------


def rollup_sums(
    *,
    account: Account,
    bucket: str,
    start: datetime | date,
    end: datetime | date,
    group_by: tuple[str, ...] = (),
    project_id: int | None = None,
    api_key_id: int | None = None,
    project_ids: tuple[int, ...] = (),
    api_key_ids: tuple[int, ...] = (),
    models: tuple[str, ...] = (),
    endpoints: tuple[str, ...] = (),
) -> list[tuple[object, tuple, Metrics]]:
    """(bucket start, group values, sums) for `account` over [start, end): hours (UTC
    datetimes, hourly rows), days or months (local dates, daily rows). `group_by` names
    roll-up columns. Only buckets with rows come back."""
    if bucket == "hour":
        rows = UsageHourly.objects.filter(account=account, hour__gte=start, hour__lt=end)
        bucket_expression = F("hour")
    else:
        rows = UsageDaily.objects.filter(account=account, day__gte=start, day__lt=end)
        bucket_expression = TruncMonth("day") if bucket == "month" else F("day")
    if project_id is not None:
        rows = rows.filter(project_id=project_id)
    if api_key_id is not None:
        rows = rows.filter(api_key_id=api_key_id)
    if project_ids:
        rows = rows.filter(project_id__in=project_ids)
    if api_key_ids:
        rows = rows.filter(api_key_id__in=api_key_ids)
    if models:
        rows = rows.filter(model__in=models)
    if endpoints:
        rows = rows.filter(endpoint__in=endpoints)
    rows = (
        rows.annotate(bucket=bucket_expression)
        .values("bucket", *group_by)
        .annotate(**_SUMS)
        .order_by("bucket", *group_by)
    )
    result = []
    for row in rows:
        moment = row["bucket"]
        if bucket == "hour":
            moment = moment.astimezone(UTC)
        elif isinstance(moment, datetime):
            moment = moment.date()
        result.append((moment, tuple(row[column] for column in group_by), _metrics(row)))
    return result


def bucket_starts(*, start: date, end: date, bucket: str) -> list[date]:
    """Every day or month from `start` to `end` inclusive (charts show the empty ones too)."""
    if bucket == "month":
        month, last, result = start.replace(day=1), end.replace(day=1), []
        while month <= last:
            result.append(month)
            month = next_month(month)
        return result
    return [start + timedelta(days=offset) for offset in range((end - start).days + 1)]


@dataclass(frozen=True)
class Group:
    id: object  # the model name, project id, key id or endpoint ("" without grouping)
    label: str


@dataclass
class UsageReport:
    query: UsageQuery
    buckets: list[date]
    groups: list[Group]
    cells: dict[tuple[date, object], Metrics]
    by_group: dict[object, Metrics]
    by_bucket: dict[date, Metrics]
    total: Metrics = field(default_factory=Metrics)

    @property
    def is_empty(self) -> bool:
        return self.total.requests == 0

    @property
    def rows(self) -> list[tuple[Group, Metrics]]:
        """The totals table: each group with its sums, costliest first."""
        return [(group, self.by_group[group.id]) for group in self.groups]


def _labels(account: Account, group_by: str, ids: set) -> dict[object, str]:
    if group_by == "project":
        names = dict(Project.objects.filter(account=account, pk__in=ids).values_list("pk", "name"))
        return {pk: names.get(pk, _("(no project)")) for pk in ids}
    if group_by == "key":
        keys = {key.pk: str(key) for key in ApiKey.objects.filter(account=account, pk__in=ids)}
        return {pk: keys.get(pk, _("Playground (no key)")) for pk in ids}
    if group_by == "model":
        return {name: name or _("(no model)") for name in ids}
    if group_by == "endpoint":
        names = dict(UsageRecord.Endpoint.choices)
        return {value: str(names.get(value, value)) for value in ids}
    return {pk: _("All usage") for pk in ids}


def usage_report(*, account: Account, query: UsageQuery) -> UsageReport:
    column = GROUP_COLUMNS.get(query.group_by)
    rows = rollup_sums(
        account=account,
        bucket=query.bucket,
        start=query.start,
        end=query.end + timedelta(days=1),
        group_by=(column,) if column else (),
        project_id=query.project_id,
        api_key_id=query.api_key_id,
        endpoints=(query.endpoint,) if query.endpoint else (),
    )
    buckets = bucket_starts(start=query.start, end=query.end, bucket=query.bucket)
    cells: dict[tuple[date, object], Metrics] = {}
    by_group: dict[object, Metrics] = {}
    by_bucket = {bucket: Metrics() for bucket in buckets}
    total = Metrics()
    for moment, values, metrics in rows:
        group_id = values[0] if values else ""
        cells[(moment, group_id)] = metrics
        by_group.setdefault(group_id, Metrics()).add(metrics)
        by_bucket.setdefault(moment, Metrics()).add(metrics)
        total.add(metrics)
    labels = _labels(account, query.group_by, set(by_group))
    # Costliest first, then busiest: the chart's legend and the table read top down.
    order = sorted(by_group, key=lambda g: (-by_group[g].fee_nano, -by_group[g].requests, str(g)))
    return UsageReport(
        query=query,
        buckets=buckets,
        groups=[Group(group_id, labels[group_id]) for group_id in order],
        cells=cells,
        by_group=by_group,
        by_bucket=by_bucket,
        total=total,
    )


def usage_csv_rows(*, account: Account, query: UsageQuery) -> list[list]:
    """One row per bucket, group and endpoint that had usage; money as exact decimal
    strings. Always split by endpoint (its value, as the API names it), so a spreadsheet
    can pivot on it whatever the page's grouping."""
    column = GROUP_COLUMNS.get(query.group_by)
    group_by = tuple(dict.fromkeys(c for c in (column, "endpoint") if c))
    rows = rollup_sums(
        account=account,
        bucket=query.bucket,
        start=query.start,
        end=query.end + timedelta(days=1),
        group_by=group_by,
        project_id=query.project_id,
        api_key_id=query.api_key_id,
        endpoints=(query.endpoint,) if query.endpoint else (),
    )
    by_endpoint = query.group_by == "endpoint"
    header = [
        "period",
        *([] if by_endpoint else [query.group_by or "group"]),
        "endpoint",
        "requests",
        "refused",
        "upstream_errors",
        "input_tokens",
        "output_tokens",
        "pack_tokens",
        "cost",
        "recharge_part",
        "bonus_part",
        "arrears",
    ]
    group_ids = {values[0] if column else "" for _moment, values, _m in rows}
    labels = _labels(account, query.group_by, group_ids)
    lines = []
    for moment, values, m in rows:
        group_id = values[0] if column else ""
        endpoint = values[-1]
        lines.append(
            [
                moment.strftime("%Y-%m") if query.bucket == "month" else moment.isoformat(),
                *([] if by_endpoint else [csv_cell(labels[group_id])]),
                endpoint,
                m.requests,
                m.refused,
                m.upstream_errors,
                m.input_tokens,
                m.output_tokens,
                m.pack_tokens,
                decimal_string(m.fee_nano),
                decimal_string(m.recharge_nano),
                decimal_string(m.bonus_nano),
                decimal_string(m.arrears_nano),
            ]
        )
    return [header, *sorted(lines, key=lambda line: [str(cell) for cell in line[:3]])]


def request_usage(*, account: Account, request_id: str) -> UsageRecord | None:
    """What one request was charged (None: nothing was recorded for it)."""
    return UsageRecord.objects.filter(account=account, request_id=request_id).first()
