"""Seed the four tiers. Staff edit them afterwards in the admin; this only creates missing
ones, so re-running migrations never overwrites a staff change.

Thresholds are cumulative paid recharge, in nano of each currency (USD at the documented
7.2 CNY per USD, rounded to whole dollars).
"""

from django.db import migrations

NANO = 10**9

TIERS = [
    # slug, name, rank, retention days, requests/minute, concurrency, CNY threshold, USD threshold
    ("free", "Free", 0, 7, 30, 3, 0, 0),
    ("standard", "Standard", 1, 30, 300, 10, 50, 7),
    ("pro", "Pro", 2, 90, 1_000, 30, 2_000, 280),
    ("enterprise", "Enterprise", 3, 365, 5_000, 100, 20_000, 2_800),
]


def seed(apps, schema_editor):
    Tier = apps.get_model("console", "Tier")
    for slug, name, rank, retention, rpm, concurrency, cny, usd in TIERS:
        Tier.objects.get_or_create(
            slug=slug,
            defaults={
                "name": name,
                "rank": rank,
                "retention_days": retention,
                "requests_per_minute": rpm,
                "concurrency": concurrency,
                "promotion_threshold_cny_nano": cny * NANO,
                "promotion_threshold_usd_nano": usd * NANO,
            },
        )


class Migration(migrations.Migration):
    dependencies = [("console", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
