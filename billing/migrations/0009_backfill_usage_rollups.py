"""Roll-ups for the usage records that existed before roll-ups did: each account's hours
(UTC) and days (its time zone) summed from its records, with the historical models (this
migration must not depend on today's code). Later records are added as they are written."""

import zoneinfo
from datetime import UTC

from django.db import migrations
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate, TruncHour

UPSTREAM_ERROR_CODES = ("1230", "1231")
SUMMED = (
    "input_tokens",
    "output_tokens",
    "pack_tokens",
    "fee_nano",
    "recharge_nano",
    "bonus_nano",
    "arrears_nano",
)


def _rows(records, bucket_expression):
    failed = Q(code__in=UPSTREAM_ERROR_CODES) & ~Q(status=200)
    return (
        records.annotate(bucket=bucket_expression)
        .values("bucket", "project_id", "api_key_id", "model", "source")
        .annotate(
            n_requests=Count("id"),
            n_refused=Count("id", filter=~Q(status=200) & ~failed),
            n_upstream_errors=Count("id", filter=failed),
            **{f"sum_{name}": Sum(name) for name in SUMMED},
        )
        .order_by()
    )


def _fields(account_id, row):
    return {
        "account_id": account_id,
        "project_id": row["project_id"] or 0,
        "api_key_id": row["api_key_id"] or 0,
        "model": row["model"],
        "source": row["source"],
        "requests": row["n_requests"],
        "refused": row["n_refused"],
        "upstream_errors": row["n_upstream_errors"],
        **{name: row[f"sum_{name}"] or 0 for name in SUMMED},
    }


def backfill(apps, schema_editor):
    Account = apps.get_model("console", "Account")
    UsageRecord = apps.get_model("billing", "UsageRecord")
    UsageHourly = apps.get_model("billing", "UsageHourly")
    UsageDaily = apps.get_model("billing", "UsageDaily")
    for account in Account.objects.filter(
        pk__in=UsageRecord.objects.values("account_id").distinct()
    ).iterator():
        if schema_editor.connection.vendor == "postgresql":
            # The lock live writers of this account take shared (billing.rollups.ROLLUP_LOCK):
            # a record written while this runs is counted once, by it or after it.
            with schema_editor.connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [8_101, account.pk])
        # Anything already there (written since migration 0008) is recomputed with the rest.
        UsageHourly.objects.filter(account_id=account.pk).delete()
        UsageDaily.objects.filter(account_id=account.pk).delete()
        records = UsageRecord.objects.filter(account_id=account.pk)
        zone = zoneinfo.ZoneInfo(account.time_zone)
        UsageHourly.objects.bulk_create(
            [
                UsageHourly(hour=row["bucket"], **_fields(account.pk, row))
                for row in _rows(records, TruncHour("created_at", tzinfo=UTC))
            ],
            batch_size=1000,
        )
        UsageDaily.objects.bulk_create(
            [
                UsageDaily(day=row["bucket"], **_fields(account.pk, row))
                for row in _rows(records, TruncDate("created_at", tzinfo=zone))
            ],
            batch_size=1000,
        )


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0008_usage_rollups"),
    ]

    operations = [
        migrations.RunPython(backfill, migrations.RunPython.noop, elidable=True),
    ]
