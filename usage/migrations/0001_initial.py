# The usage records and roll-ups move here from `billing` (issue 21). Their tables keep their names
# (`db_table`), so this migration only changes Django's state: no table, index or row moves.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("billing", "0010_alerts"),
        ("console", "0013_outgoing_email"),
        ("keys", "0001_initial"),
        ("projects", "0002_project_cap"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="UsageDaily",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("project_id", models.BigIntegerField(default=0)),
                        ("api_key_id", models.BigIntegerField(default=0)),
                        (
                            "model",
                            models.CharField(blank=True, max_length=64, verbose_name="model"),
                        ),
                        ("source", models.CharField(max_length=8)),
                        ("requests", models.BigIntegerField(default=0)),
                        ("refused", models.BigIntegerField(default=0)),
                        ("upstream_errors", models.BigIntegerField(default=0)),
                        ("input_tokens", models.BigIntegerField(default=0)),
                        ("output_tokens", models.BigIntegerField(default=0)),
                        ("pack_tokens", models.BigIntegerField(default=0)),
                        ("fee_nano", models.BigIntegerField(default=0)),
                        ("recharge_nano", models.BigIntegerField(default=0)),
                        ("bonus_nano", models.BigIntegerField(default=0)),
                        ("arrears_nano", models.BigIntegerField(default=0)),
                        (
                            "day",
                            models.DateField(
                                help_text="The calendar day in the account's time zone.",
                                verbose_name="day",
                            ),
                        ),
                        (
                            "account",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="+",
                                to="console.account",
                            ),
                        ),
                    ],
                    options={
                        "verbose_name": "daily usage",
                        "verbose_name_plural": "daily usage",
                        "db_table": "billing_usagedaily",
                        "constraints": [
                            models.UniqueConstraint(
                                fields=(
                                    "account",
                                    "day",
                                    "project_id",
                                    "api_key_id",
                                    "model",
                                    "source",
                                ),
                                name="usage_daily_group_unique",
                            )
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="UsageHourly",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("project_id", models.BigIntegerField(default=0)),
                        ("api_key_id", models.BigIntegerField(default=0)),
                        (
                            "model",
                            models.CharField(blank=True, max_length=64, verbose_name="model"),
                        ),
                        ("source", models.CharField(max_length=8)),
                        ("requests", models.BigIntegerField(default=0)),
                        ("refused", models.BigIntegerField(default=0)),
                        ("upstream_errors", models.BigIntegerField(default=0)),
                        ("input_tokens", models.BigIntegerField(default=0)),
                        ("output_tokens", models.BigIntegerField(default=0)),
                        ("pack_tokens", models.BigIntegerField(default=0)),
                        ("fee_nano", models.BigIntegerField(default=0)),
                        ("recharge_nano", models.BigIntegerField(default=0)),
                        ("bonus_nano", models.BigIntegerField(default=0)),
                        ("arrears_nano", models.BigIntegerField(default=0)),
                        (
                            "hour",
                            models.DateTimeField(
                                help_text="The hour's first instant (UTC).", verbose_name="hour"
                            ),
                        ),
                        (
                            "account",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="+",
                                to="console.account",
                            ),
                        ),
                    ],
                    options={
                        "verbose_name": "hourly usage",
                        "verbose_name_plural": "hourly usage",
                        "db_table": "billing_usagehourly",
                        "constraints": [
                            models.UniqueConstraint(
                                fields=(
                                    "account",
                                    "hour",
                                    "project_id",
                                    "api_key_id",
                                    "model",
                                    "source",
                                ),
                                name="usage_hourly_group_unique",
                            )
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="UsageRecord",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("request_id", models.CharField(max_length=64, verbose_name="request id")),
                        (
                            "client_request_id",
                            models.CharField(
                                blank=True, max_length=128, verbose_name="client request id"
                            ),
                        ),
                        (
                            "source",
                            models.CharField(
                                choices=[("api", "API"), ("console", "Console")],
                                default="api",
                                max_length=8,
                            ),
                        ),
                        (
                            "model",
                            models.CharField(blank=True, max_length=64, verbose_name="model"),
                        ),
                        ("stream", models.BooleanField(default=False)),
                        ("status", models.PositiveSmallIntegerField(verbose_name="HTTP status")),
                        (
                            "code",
                            models.CharField(blank=True, max_length=16, verbose_name="error code"),
                        ),
                        ("input_tokens", models.BigIntegerField(default=0)),
                        ("output_tokens", models.BigIntegerField(default=0)),
                        ("pack_tokens", models.BigIntegerField(default=0)),
                        ("input_price_nano", models.BigIntegerField(default=0)),
                        ("output_price_nano", models.BigIntegerField(default=0)),
                        ("fee_nano", models.BigIntegerField(default=0)),
                        ("recharge_nano", models.BigIntegerField(default=0)),
                        ("bonus_nano", models.BigIntegerField(default=0)),
                        ("arrears_nano", models.BigIntegerField(default=0)),
                        ("estimated", models.BooleanField(default=False)),
                        ("latency_ms", models.PositiveIntegerField(default=0)),
                        ("first_token_ms", models.PositiveIntegerField(blank=True, null=True)),
                        ("created_at", models.DateTimeField(verbose_name="time")),
                        (
                            "account",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="+",
                                to="console.account",
                            ),
                        ),
                        (
                            "api_key",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="+",
                                to="keys.apikey",
                            ),
                        ),
                        (
                            "project",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="+",
                                to="projects.project",
                            ),
                        ),
                    ],
                    options={
                        "verbose_name": "usage record",
                        "verbose_name_plural": "usage records",
                        "db_table": "billing_usagerecord",
                        "indexes": [
                            models.Index(
                                fields=["account", "created_at"], name="usage_account_time_idx"
                            )
                        ],
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("account", "request_id"), name="usage_request_unique"
                            )
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
