"""Issue 23: the endpoint as a roll-up group (like the source), in the roll-ups' unique
constraints and so in the upsert's conflict target.

Existing roll-up rows get endpoint "openai". Which of them came from coding-plan requests
cannot be told from the roll-ups: a key calls both endpoints, so one row of an hour may hold
requests of both, and a roll-up keeps no plan term. The records can tell (0003 marked the
ones a plan term paid as "coding"), so the roll-ups of every account that has a record of
another endpoint than "openai" are rebuilt from its records here, with the historical
models (as billing 0009 did; `manage.py rebuild_rollups` does the same by hand). An account
with no such record keeps its rows as they are: for it, grouping by endpoint changes
nothing. Backwards, those accounts' roll-ups are rebuilt without the endpoint, so the old
constraint holds again.
"""

import zoneinfo
from datetime import UTC

from django.db import migrations, models
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
# usage.rollups.ROLLUP_LOCK: live writers of an account take it shared.
ROLLUP_LOCK = 8_101


def _rows(records, bucket_expression, group):
    failed = Q(code__in=UPSTREAM_ERROR_CODES) & ~Q(status=200)
    return (
        records.annotate(bucket=bucket_expression)
        .values("bucket", *group)
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
        "endpoint": row.get("endpoint", "openai"),
        "requests": row["n_requests"],
        "refused": row["n_refused"],
        "upstream_errors": row["n_upstream_errors"],
        **{name: row[f"sum_{name}"] or 0 for name in SUMMED},
    }


def _rebuild(apps, schema_editor, *, by_endpoint):
    Account = apps.get_model("console", "Account")
    UsageRecord = apps.get_model("usage", "UsageRecord")
    UsageHourly = apps.get_model("usage", "UsageHourly")
    UsageDaily = apps.get_model("usage", "UsageDaily")
    group = ["project_id", "api_key_id", "model", "source"]
    if by_endpoint:
        group.append("endpoint")
    accounts = Account.objects.filter(
        pk__in=UsageRecord.objects.exclude(endpoint="openai").values("account_id").distinct()
    )
    for account in accounts.order_by("pk").iterator():
        if schema_editor.connection.vendor == "postgresql":
            with schema_editor.connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [ROLLUP_LOCK, account.pk])
        UsageHourly.objects.filter(account_id=account.pk).delete()
        UsageDaily.objects.filter(account_id=account.pk).delete()
        records = UsageRecord.objects.filter(account_id=account.pk)
        zone = zoneinfo.ZoneInfo(account.time_zone)
        UsageHourly.objects.bulk_create(
            [
                UsageHourly(hour=row["bucket"], **_fields(account.pk, row))
                for row in _rows(records, TruncHour("created_at", tzinfo=UTC), group)
            ],
            batch_size=1000,
        )
        UsageDaily.objects.bulk_create(
            [
                UsageDaily(day=row["bucket"], **_fields(account.pk, row))
                for row in _rows(records, TruncDate("created_at", tzinfo=zone), group)
            ],
            batch_size=1000,
        )


def split_by_endpoint(apps, schema_editor):
    _rebuild(apps, schema_editor, by_endpoint=True)


def merge_endpoints(apps, schema_editor):
    _rebuild(apps, schema_editor, by_endpoint=False)


class Migration(migrations.Migration):
    dependencies = [
        ("console", "0015_staff_manage_plan"),
        ("usage", "0003_endpoint_requested_model"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="usagedaily",
            name="usage_daily_group_unique",
        ),
        migrations.RemoveConstraint(
            model_name="usagehourly",
            name="usage_hourly_group_unique",
        ),
        migrations.AddField(
            model_name="usagedaily",
            name="endpoint",
            field=models.CharField(
                choices=[
                    ("openai", "OpenAI-compatible"),
                    ("coding", "Coding plan (OpenAI-compatible)"),
                    ("anthropic", "Anthropic-compatible"),
                ],
                default="openai",
                db_default="openai",
                max_length=16,
                verbose_name="endpoint",
            ),
        ),
        migrations.AddField(
            model_name="usagehourly",
            name="endpoint",
            field=models.CharField(
                choices=[
                    ("openai", "OpenAI-compatible"),
                    ("coding", "Coding plan (OpenAI-compatible)"),
                    ("anthropic", "Anthropic-compatible"),
                ],
                default="openai",
                db_default="openai",
                max_length=16,
                verbose_name="endpoint",
            ),
        ),
        migrations.AddConstraint(
            model_name="usagedaily",
            constraint=models.UniqueConstraint(
                fields=(
                    "account",
                    "day",
                    "project_id",
                    "api_key_id",
                    "model",
                    "source",
                    "endpoint",
                ),
                name="usage_daily_group_unique",
            ),
        ),
        migrations.AddConstraint(
            model_name="usagehourly",
            constraint=models.UniqueConstraint(
                fields=(
                    "account",
                    "hour",
                    "project_id",
                    "api_key_id",
                    "model",
                    "source",
                    "endpoint",
                ),
                name="usage_hourly_group_unique",
            ),
        ),
        migrations.RunPython(split_by_endpoint, merge_endpoints),
    ]
