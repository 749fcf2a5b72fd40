# The alert settings and alerts sent move here from `billing` (issue 21). Their tables keep their names
# (`db_table`), so this migration only changes Django's state: no table, index or row moves.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("billing", "0010_alerts"),
        ("console", "0013_outgoing_email"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="AlertSettings",
                    fields=[
                        (
                            "account",
                            models.OneToOneField(
                                on_delete=django.db.models.deletion.CASCADE,
                                primary_key=True,
                                related_name="alert_settings",
                                serialize=False,
                                to="console.account",
                            ),
                        ),
                        (
                            "balance_below_nano",
                            models.BigIntegerField(
                                blank=True,
                                null=True,
                                verbose_name="when the balance falls below (nano)",
                            ),
                        ),
                        (
                            "caps",
                            models.BooleanField(
                                default=True,
                                verbose_name="projects at 50, 80 and 100 percent of their cap, and the account budget",
                            ),
                        ),
                        (
                            "spike_tenths",
                            models.PositiveIntegerField(
                                blank=True,
                                default=30,
                                null=True,
                                verbose_name="daily spend above this many tenths of the 7-day average",
                            ),
                        ),
                        (
                            "pack_low_percent",
                            models.PositiveSmallIntegerField(
                                blank=True,
                                default=10,
                                null=True,
                                verbose_name="a resource pack below this percent",
                            ),
                        ),
                        (
                            "pack_expiry_days",
                            models.PositiveSmallIntegerField(
                                blank=True,
                                default=7,
                                null=True,
                                verbose_name="a resource pack expiring within days",
                            ),
                        ),
                        ("email", models.BooleanField(default=True, verbose_name="email")),
                        (
                            "in_app",
                            models.BooleanField(default=True, verbose_name="in-app notification"),
                        ),
                        ("webhook", models.BooleanField(default=True, verbose_name="webhooks")),
                    ],
                    options={
                        "verbose_name": "alert settings",
                        "verbose_name_plural": "alert settings",
                        "db_table": "billing_alertsettings",
                        "constraints": [
                            models.CheckConstraint(
                                condition=models.Q(
                                    models.Q(
                                        ("balance_below_nano__isnull", True),
                                        ("balance_below_nano__gt", 0),
                                        _connector="OR",
                                    ),
                                    models.Q(
                                        ("spike_tenths__isnull", True),
                                        ("spike_tenths__gt", 10),
                                        _connector="OR",
                                    ),
                                    models.Q(
                                        ("pack_low_percent__isnull", True),
                                        ("pack_low_percent__range", (1, 99)),
                                        _connector="OR",
                                    ),
                                ),
                                name="alert_settings_in_range",
                            )
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="AlertFiring",
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
                        (
                            "kind",
                            models.CharField(
                                choices=[
                                    ("balance_low", "Balance below the threshold"),
                                    ("project_cap", "Project at a share of its cap"),
                                    ("account_budget", "Account at a share of its budget"),
                                    ("daily_spike", "Unusual daily spend"),
                                    ("pack_low", "Resource pack running low"),
                                    ("pack_expiring", "Resource pack expiring"),
                                ],
                                max_length=16,
                                verbose_name="kind",
                            ),
                        ),
                        (
                            "subject",
                            models.CharField(blank=True, max_length=40, verbose_name="subject"),
                        ),
                        (
                            "level",
                            models.PositiveSmallIntegerField(default=0, verbose_name="level"),
                        ),
                        (
                            "period",
                            models.CharField(blank=True, max_length=16, verbose_name="period"),
                        ),
                        ("sequence", models.PositiveIntegerField(default=1)),
                        ("message", models.CharField(max_length=300, verbose_name="message")),
                        ("fired_at", models.DateTimeField(verbose_name="sent")),
                        (
                            "cleared_at",
                            models.DateTimeField(blank=True, null=True, verbose_name="cleared"),
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
                        "verbose_name": "alert sent",
                        "verbose_name_plural": "alerts sent",
                        "db_table": "billing_alertfiring",
                        "indexes": [
                            models.Index(
                                fields=["account", "-fired_at"], name="alert_firing_account_idx"
                            ),
                            models.Index(
                                condition=models.Q(("cleared_at__isnull", True)),
                                fields=["account"],
                                name="alert_firing_open_idx",
                            ),
                        ],
                        "constraints": [
                            models.UniqueConstraint(
                                fields=(
                                    "account",
                                    "kind",
                                    "subject",
                                    "level",
                                    "period",
                                    "sequence",
                                ),
                                name="alert_firing_once",
                            )
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
