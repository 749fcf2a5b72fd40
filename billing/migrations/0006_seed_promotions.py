"""The recharge promotions the issue asks for: +5% bonus from 1,000 and +10% from 5,000 (in
CNY; in USD from 150 and 700, the same amounts at 7.2 CNY per USD, rounded to round
figures). Only created when missing, so staff edits survive."""

from django.db import migrations

UNIT = 10**9
PROMOTIONS = [
    ("Recharge ¥1,000: +5% bonus", "CNY", 1_000, 500),
    ("Recharge ¥5,000: +10% bonus", "CNY", 5_000, 1_000),
    ("Recharge $150: +5% bonus", "USD", 150, 500),
    ("Recharge $700: +10% bonus", "USD", 700, 1_000),
]


def seed(apps, schema_editor):
    Promotion = apps.get_model("billing", "Promotion")
    for name, currency, minimum, basis_points in PROMOTIONS:
        Promotion.objects.get_or_create(
            currency=currency,
            min_amount_nano=minimum * UNIT,
            defaults={"name": name, "bonus_basis_points": basis_points},
        )


class Migration(migrations.Migration):
    dependencies = [("billing", "0005_payments_invoices_statements")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
