"""Usage roll-ups: hourly and daily sums of the usage records per account, project, key, model,
source and endpoint. Pages, the overview and the usage API read these rows; the records are
the truth.

Kept current incrementally: a record is inserted in the same transaction as the upserts
adding it to its hourly and daily rows (`usage_record_writes`: `usage_record_write` runs
them, the gateway's settlement runs them in its charge's round trip), upserts that add
(`requests = requests + 1`), so a record counts exactly once — it is inserted once
(unique request id), and a rolled-back insert takes its increment with it.
`rollups_rebuild` recomputes any stretch from the records (after a time-zone change, after
an upgrade or an import, or if rows were ever edited by hand); the nightly reconciliation
finds accounts whose roll-ups disagree with their records in any metric, hour or day (a
request that settled across a time-zone change lands on the old zone's day) and rebuilds
them.

Hours are UTC; days are calendar days in the account's time zone, like caps and statements.
"""

import functools
import logging
import zoneinfo
from datetime import UTC, date, datetime, time

from django.db import connection, transaction
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate, TruncHour

from billing import writes
from console.api_errors import UPSTREAM_ERROR, UPSTREAM_TIMEOUT
from console.models import Account
from usage.models import UsageDaily, UsageHourly, UsageRecord

log = logging.getLogger(__name__)

# The gateway's codes for a forwarded request whose upstream failed (502) or timed out (504);
# every other non-200 record was refused at admission.
UPSTREAM_ERROR_CODES = (UPSTREAM_ERROR.code, UPSTREAM_TIMEOUT.code)

# The group columns, in the order of the upsert's values (and of its conflict target after
# the account and the bucket, which is the unique constraints' order).
GROUP = ("account_id", "project_id", "api_key_id", "model", "source", "endpoint")
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


@functools.cache
def _upsert_sql(vendor: str, table_name: str, bucket: str, row_count: int) -> str:
    """The upsert statement for `row_count` rows, built once per shape: the settlement path
    runs it for every request, and quoting thirty names each time showed in a profile."""
    quote = connection.ops.quote_name
    table = quote(table_name)
    columns = ", ".join(quote(c) for c in (*GROUP, bucket, *METRICS))
    row_sql = "(" + ", ".join(["%s"] * (len(GROUP) + 1 + len(METRICS))) + ")"
    updates = ", ".join(f"{quote(m)} = {table}.{quote(m)} + EXCLUDED.{quote(m)}" for m in METRICS)
    conflict = ", ".join(quote(c) for c in ("account_id", bucket, *GROUP[1:]))
    return (
        f"INSERT INTO {table} ({columns}) VALUES {', '.join([row_sql] * row_count)} "  # noqa: S608 (names are ours)
        f"ON CONFLICT ({conflict}) DO UPDATE SET {updates}"
    )


def _upsert(model, bucket: str, rows: list[tuple]) -> None:
    """Add `rows` (group columns, bucket, metrics) to `model`'s table: insert new groups,
    add to existing ones. One statement per batch, the same on PostgreSQL and SQLite."""
    adapt = (
        connection.ops.adapt_datetimefield_value
        if bucket == "hour"
        else connection.ops.adapt_datefield_value
    )
    bucket_at = len(GROUP)
    with connection.cursor() as cursor:
        for start in range(0, len(rows), BATCH):
            batch = rows[start : start + BATCH]
            params = []
            for row in batch:
                params.extend(row[:bucket_at])
                params.append(adapt(row[bucket_at]))
                params.extend(row[bucket_at + 1 :])
            sql = _upsert_sql(connection.vendor, model._meta.db_table, bucket, len(batch))
            cursor.execute(sql, params)


def rollup_writes(*, record: UsageRecord, time_zone: str) -> list[writes.Write]:
    """The upserts adding one new usage record to its hour and its day."""
    group = (
        record.account_id,
        record.project_id or 0,
        record.api_key_id or 0,
        record.model,
        record.source,
        record.endpoint,
    )
    metrics = _metrics(record)
    hour = connection.ops.adapt_datetimefield_value(hour_of(record.created_at))
    day = connection.ops.adapt_datefield_value(day_of(record.created_at, time_zone))
    vendor = connection.vendor
    return [
        writes.Write(
            "usage_hourly",
            _upsert_sql(vendor, UsageHourly._meta.db_table, "hour", 1),
            [*group, hour, *metrics],
        ),
        writes.Write(
            "usage_daily",
            _upsert_sql(vendor, UsageDaily._meta.db_table, "day", 1),
            [*group, day, *metrics],
        ),
    ]


# The advisory-lock class of roll-up writes (the second key is the account id): writers take
# it shared, a rebuild of the account exclusive. Only that account's writers wait.
ROLLUP_LOCK = 8_101


def rollups_lock(account_id: int, *, exclusive: bool = False) -> None:
    """Writers of one account's roll-ups share this lock (taken before the record is
    inserted); its rebuild holds it alone, until commit. On SQLite every write transaction
    is exclusive already."""
    if connection.vendor != "postgresql":
        return
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {function}(%s, %s)", [ROLLUP_LOCK, account_id])


def usage_record_writes(*, record: UsageRecord, time_zone: str) -> list[writes.Write]:
    """The writes of one new usage record (unsaved): the record and its roll-ups. Whoever
    runs them holds `rollups_lock` already."""
    return [
        writes.insert_write(record, name="usage_record"),
        *rollup_writes(record=record, time_zone=time_zone),
    ]


def usage_record_write(**fields) -> UsageRecord:
    """A usage record that costs nothing (a refusal), with its roll-ups, atomically. The
    gateway's settlement writes a charged request's record in the charge's round trip.
    No savepoint: an error fails the caller's transaction."""
    record = UsageRecord(**fields)
    with transaction.atomic(savepoint=False):
        rollups_lock(record.account_id)
        writes.run(usage_record_writes(record=record, time_zone=fields["account"].time_zone))
    return record


def _metric_sums() -> dict:
    """The roll-up metrics as aggregates over usage records (what `_metrics` adds up one
    record at a time)."""
    failed = Q(code__in=UPSTREAM_ERROR_CODES) & ~Q(status=200)
    return {
        "n_requests": Count("id"),
        "n_refused": Count("id", filter=~Q(status=200) & ~failed),
        "n_upstream_errors": Count("id", filter=failed),
        **{f"sum_{name}": Sum(name) for name in METRICS[3:]},
    }


def _metric_values(row: dict) -> tuple[int, ...]:
    return (
        row["n_requests"],
        row["n_refused"],
        row["n_upstream_errors"],
        *(row[f"sum_{name}"] or 0 for name in METRICS[3:]),
    )


def _aggregate(records, bucket_expression) -> list[tuple]:
    rows = (
        records.annotate(bucket=bucket_expression)
        .values("bucket", *GROUP[1:])
        .annotate(**_metric_sums())
        .order_by()
    )
    return [
        (
            None,  # the account id, filled in by the caller
            row["project_id"] or 0,
            row["api_key_id"] or 0,
            *(row[column] for column in GROUP[3:]),
            row["bucket"],
            *_metric_values(row),
        )
        for row in rows
    ]


def rollups_rebuild(
    *, account: Account, since: datetime | None = None, hourly: bool = True
) -> tuple[int, int]:
    """Recompute `account`'s roll-ups from its usage records, all of them or from `since` on
    (hours from since's hour, days from since's local day); only the daily rows when
    `hourly` is false (a time-zone change moves days, not UTC hours). Idempotent. Returns
    the numbers of hourly and daily rows written.

    Exact beside live traffic: the rebuild holds the account's roll-up lock exclusively
    (every writer of a record takes it shared before inserting it). A writer that already
    holds it commits first, and the rebuild then counts its record; a writer that comes
    later waits, then adds to the rebuilt row. Either way once; other accounts never wait.
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
    hourly_rows: list[tuple] = []
    with transaction.atomic():
        rollups_lock(account.pk, exclusive=True)
        if hourly:
            hours.delete()
            hourly_rows = _aggregate(hourly_records, TruncHour("created_at", tzinfo=UTC))
            hourly_rows = [(account.pk, *row[1:]) for row in hourly_rows]
            _upsert(UsageHourly, "hour", hourly_rows)
        days.delete()
        daily_rows = _aggregate(daily_records, TruncDate("created_at", tzinfo=zone))
        daily_rows = [(account.pk, *row[1:]) for row in daily_rows]
        _upsert(UsageDaily, "day", daily_rows)
    log.info(
        "rollups rebuilt: account=%s since=%s hourly=%s daily=%s",
        account.pk,
        since,
        len(hourly_rows),
        len(daily_rows),
    )
    return len(hourly_rows), len(daily_rows)


def _record_sums(records, bucket_expression) -> dict[tuple, tuple]:
    """{(account id, bucket, endpoint): every metric} summed from usage records. By
    endpoint too: a row added to the wrong endpoint's group is a difference."""
    rows = (
        records.annotate(bucket=bucket_expression)
        .values("account_id", "bucket", "endpoint")
        .annotate(**_metric_sums())
        .order_by()
    )
    return {
        (row["account_id"], row["bucket"], row["endpoint"]): _metric_values(row) for row in rows
    }


def _rollup_sums(rows, bucket: str) -> dict[tuple, tuple]:
    """{(account id, bucket, endpoint): every metric} summed from roll-up rows."""
    return {
        (row["account_id"], row[bucket], row["endpoint"]): tuple(
            row[f"sum_{name}"] or 0 for name in METRICS
        )
        for row in rows.values("account_id", bucket, "endpoint")
        .annotate(**{f"sum_{name}": Sum(name) for name in METRICS})
        .order_by()
    }


def _differing(left: dict, right: dict) -> set[int]:
    return {key[0] for key in left.keys() | right.keys() if left.get(key) != right.get(key)}


def rollups_disagreeing(*, since: datetime) -> list[int]:
    """Accounts whose roll-ups from `since` on disagree with their usage records, in any
    metric of any hour or (local) day. Both sides are read in one snapshot on PostgreSQL
    (REPEATABLE READ), so a request settling meanwhile cannot look like a difference."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        differ = set()
        first_hour = hour_of(since)
        differ |= _differing(
            _record_sums(
                UsageRecord.objects.filter(created_at__gte=first_hour),
                TruncHour("created_at", tzinfo=UTC),
            ),
            _rollup_sums(UsageHourly.objects.filter(hour__gte=first_hour), "hour"),
        )
        # Days are each account's own: compare per time zone.
        for name in Account.objects.values_list("time_zone", flat=True).distinct():
            zone = zoneinfo.ZoneInfo(name)
            first_day = day_of(since, name)
            differ |= _differing(
                _record_sums(
                    UsageRecord.objects.filter(
                        account__time_zone=name,
                        created_at__gte=datetime.combine(first_day, time.min, tzinfo=zone),
                    ),
                    TruncDate("created_at", tzinfo=zone),
                ),
                _rollup_sums(
                    UsageDaily.objects.filter(account__time_zone=name, day__gte=first_day), "day"
                ),
            )
    return sorted(differ)


def rollups_reconcile(*, since: datetime) -> list[int]:
    """Rebuild, from `since` on, every account whose roll-ups disagree with its records."""
    repaired = []
    for account in Account.objects.filter(pk__in=rollups_disagreeing(since=since)):
        rollups_rebuild(account=account, since=since)
        repaired.append(account.pk)
    if repaired:
        log.warning("rollups reconciled: accounts=%s since=%s", repaired, since)
    return repaired
