"""Usage roll-ups: hourly and daily sums of the usage records per account, project, key, model
and source. Pages, the overview and the usage API read these rows; the records are the truth.

Kept current incrementally: `usage_record_write` inserts a record and adds it to its hourly
and daily rows in the same transaction, by an upsert that adds (`requests = requests + 1`),
so a record counts exactly once — it is inserted once (unique request id), and a rolled-back
insert takes its increment with it. `rollups_rebuild` recomputes any stretch from the
records (after a time-zone change, or if rows were ever edited by hand); the daily
reconciliation job finds accounts whose roll-ups disagree with their records and rebuilds
them.

Hours are UTC; days are calendar days in the account's time zone, like caps and statements.
"""

import logging
import zoneinfo
from datetime import UTC, date, datetime, time

from django.db import connection, transaction
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate, TruncHour

from billing.models import UsageDaily, UsageHourly, UsageRecord
from console.models import Account

log = logging.getLogger(__name__)

# The gateway's codes for a forwarded request whose upstream failed (502) or timed out (504);
# every other non-200 record was refused at admission. (gateway.errors: UPSTREAM_ERROR,
# UPSTREAM_TIMEOUT; a test checks they agree.)
UPSTREAM_ERROR_CODES = ("1230", "1231")

GROUP = ("account_id", "project_id", "api_key_id", "model", "source")
METRICS = (
    "requests",
    "refused",
    "upstream_errors",
    "input_tokens",
    "output_tokens",
    "pack_tokens",
    "fee_nano",
    "recharge_nano",
    "bonus_nano",
    "arrears_nano",
)
# Multi-row upserts in batches: well under SQLite's and PostgreSQL's parameter limits.
BATCH = 500


def _upstream_failed(status: int, code: str) -> bool:
    return status != 200 and code in UPSTREAM_ERROR_CODES


def _metrics(record: UsageRecord) -> tuple[int, ...]:
    failed = _upstream_failed(record.status, record.code)
    return (
        1,
        int(record.status != 200 and not failed),
        int(failed),
        record.input_tokens,
        record.output_tokens,
        record.pack_tokens,
        record.fee_nano,
        record.recharge_nano,
        record.bonus_nano,
        record.arrears_nano,
    )


def hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def day_of(moment: datetime, time_zone: str) -> date:
    return moment.astimezone(zoneinfo.ZoneInfo(time_zone)).date()


def _upsert(model, bucket: str, rows: list[tuple]) -> None:
    """Add `rows` (group columns, bucket, metrics) to `model`'s table: insert new groups,
    add to existing ones. One statement per batch, the same on PostgreSQL and SQLite."""
    if not rows:
        return
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = [*GROUP, bucket, *METRICS]
    adapt = (
        connection.ops.adapt_datetimefield_value
        if bucket == "hour"
        else connection.ops.adapt_datefield_value
    )
    bucket_at = len(GROUP)
    row_sql = "(" + ", ".join(["%s"] * len(columns)) + ")"
    updates = ", ".join(f"{quote(m)} = {table}.{quote(m)} + EXCLUDED.{quote(m)}" for m in METRICS)
    conflict = ", ".join(quote(c) for c in ("account_id", bucket, *GROUP[1:]))
    with connection.cursor() as cursor:
        for start in range(0, len(rows), BATCH):
            batch = rows[start : start + BATCH]
            params = []
            for row in batch:
                params.extend(row[:bucket_at])
                params.append(adapt(row[bucket_at]))
                params.extend(row[bucket_at + 1 :])
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(quote(c) for c in columns)}) "  # noqa: S608 (names are ours)
                f"VALUES {', '.join([row_sql] * len(batch))} "
                f"ON CONFLICT ({conflict}) DO UPDATE SET {updates}",
                params,
            )


def rollup_add(*, record: UsageRecord, time_zone: str) -> None:
    """Add one new usage record to its hour and its day (inside the inserting transaction)."""
    group = (
        record.account_id,
        record.project_id or 0,
        record.api_key_id or 0,
        record.model,
        record.source,
    )
    metrics = _metrics(record)
    _upsert(UsageHourly, "hour", [(*group, hour_of(record.created_at), *metrics)])
    _upsert(UsageDaily, "day", [(*group, day_of(record.created_at, time_zone), *metrics)])


def usage_record_write(**fields) -> UsageRecord:
    """The one way a usage record is written: the record and its roll-ups, atomically."""
    with transaction.atomic():
        record = UsageRecord.objects.create(**fields)
        rollup_add(record=record, time_zone=fields["account"].time_zone)
    return record


def _aggregate(records, bucket_expression) -> list[tuple]:
    failed = Q(code__in=UPSTREAM_ERROR_CODES) & ~Q(status=200)
    rows = (
        records.annotate(bucket=bucket_expression)
        .values("bucket", "project_id", "api_key_id", "model", "source")
        .annotate(
            n_requests=Count("id"),
            n_refused=Count("id", filter=~Q(status=200) & ~failed),
            n_upstream_errors=Count("id", filter=failed),
            **{f"sum_{name}": Sum(name) for name in METRICS[3:]},
        )
        .order_by()
    )
    return [
        (
            None,  # the account id, filled in by the caller
            row["project_id"] or 0,
            row["api_key_id"] or 0,
            row["model"],
            row["source"],
            row["bucket"],
            row["n_requests"],
            row["n_refused"],
            row["n_upstream_errors"],
            *(row[f"sum_{name}"] or 0 for name in METRICS[3:]),
        )
        for row in rows
    ]


def rollups_rebuild(*, account: Account, since: datetime | None = None) -> tuple[int, int]:
    """Recompute `account`'s roll-ups from its usage records, all of them or from `since` on
    (hours from since's hour, days from since's local day). Idempotent. Returns the numbers
    of hourly and daily rows written.

    Exact beside live traffic: on PostgreSQL the roll-up tables are locked against writers
    (SHARE ROW EXCLUSIVE) for the rebuild's transaction. A writer that already added its
    record holds its lock until it commits, so the rebuild waits and then counts the record;
    a writer that has not yet added waits for the rebuild and then adds to the rebuilt row.
    Either way once. Writers of every account wait meanwhile, so rebuilds are for repairs
    and time-zone changes, not for routine use. (SQLite's writers are serialised anyway.)
    """
    zone = zoneinfo.ZoneInfo(account.time_zone)
    records = UsageRecord.objects.filter(account=account)
    hours = UsageHourly.objects.filter(account=account)
    days = UsageDaily.objects.filter(account=account)
    hourly_records = daily_records = records
    if since is not None:
        first_hour = hour_of(since)
        first_day = day_of(since, account.time_zone)
        hours = hours.filter(hour__gte=first_hour)
        days = days.filter(day__gte=first_day)
        hourly_records = records.filter(created_at__gte=first_hour)
        daily_records = records.filter(
            created_at__gte=datetime.combine(first_day, time.min, tzinfo=zone)
        )
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    f"LOCK TABLE {UsageHourly._meta.db_table}, {UsageDaily._meta.db_table} "
                    "IN SHARE ROW EXCLUSIVE MODE"
                )
        hours.delete()
        days.delete()
        hourly = _aggregate(hourly_records, TruncHour("created_at", tzinfo=UTC))
        daily = _aggregate(daily_records, TruncDate("created_at", tzinfo=zone))
        hourly = [(account.pk, *row[1:]) for row in hourly]
        daily = [(account.pk, *row[1:]) for row in daily]
        _upsert(UsageHourly, "hour", hourly)
        _upsert(UsageDaily, "day", daily)
    log.info(
        "rollups rebuilt: account=%s since=%s hourly=%s daily=%s",
        account.pk,
        since,
        len(hourly),
        len(daily),
    )
    return len(hourly), len(daily)


def rollups_disagreeing(*, since: datetime) -> list[int]:
    """Accounts whose hourly roll-ups from `since`'s hour on disagree with their usage records
    (count, tokens or fee). Reads one aggregate of each side per account."""
    first_hour = hour_of(since)
    fields = ("input_tokens", "output_tokens", "fee_nano")
    from_records = {
        row["account_id"]: (row["n"], *(row[f] or 0 for f in fields))
        for row in UsageRecord.objects.filter(created_at__gte=first_hour)
        .values("account_id")
        .annotate(n=Count("id"), **{f: Sum(f) for f in fields})
        .order_by()
    }
    from_rollups = {
        row["account_id"]: (row["n"] or 0, *(row[f] or 0 for f in fields))
        for row in UsageHourly.objects.filter(hour__gte=first_hour)
        .values("account_id")
        .annotate(n=Sum("requests"), **{f: Sum(f) for f in fields})
        .order_by()
    }
    return sorted(
        account_id
        for account_id in from_records.keys() | from_rollups.keys()
        if from_records.get(account_id) != from_rollups.get(account_id)
    )


def rollups_reconcile(*, since: datetime) -> list[int]:
    """Rebuild, from `since` on, every account whose roll-ups disagree with its records."""
    repaired = []
    for account in Account.objects.filter(pk__in=rollups_disagreeing(since=since)):
        rollups_rebuild(account=account, since=since)
        repaired.append(account.pk)
    if repaired:
        log.warning("rollups reconciled: accounts=%s since=%s", repaired, since)
    return repaired
