"""Load the model prices (billing/data/prices.json: USD from reference 001, CNY where it gives
CNY, the other currency at 7.2 CNY per USD) and the resource pack catalogue; open a wallet for
every account that has none. Only missing rows are created, so staff edits survive."""

import json
from datetime import datetime
from pathlib import Path

from django.db import migrations

NANO = 10**9

PACKS = [
    # name, model, tokens, days, CNY price, USD price (in nano)
    ("GLM-4.7 · 10M tokens · 30 days", "glm-4.7", 10_000_000, 30, 39 * NANO, 5_400_000_000),
    ("GLM-4.7 · 100M tokens · 90 days", "glm-4.7", 100_000_000, 90, 299 * NANO, 41_500_000_000),
    ("Any model · 50M tokens · 30 days", "", 50_000_000, 30, 199 * NANO, 27_600_000_000),
]


def load(apps, schema_editor):
    ModelPrice = apps.get_model("billing", "ModelPrice")
    PackProduct = apps.get_model("billing", "PackProduct")
    Wallet = apps.get_model("billing", "Wallet")
    Account = apps.get_model("console", "Account")
    data = json.loads((Path(__file__).resolve().parents[1] / "data" / "prices.json").read_text())
    effective = datetime.fromisoformat(data["effective_from"].replace("Z", "+00:00"))
    for row in data["prices"]:
        ModelPrice.objects.get_or_create(
            model=row["model"],
            currency=row["currency"],
            effective_from=effective,
            defaults={
                "input_per_million_nano": row["input"],
                "output_per_million_nano": row["output"],
            },
        )
    for name, model, tokens, days, cny, usd in PACKS:
        PackProduct.objects.get_or_create(
            name=name,
            defaults={
                "model": model,
                "tokens": tokens,
                "validity_days": days,
                "price_cny_nano": cny,
                "price_usd_nano": usd,
            },
        )
    for account in Account.objects.filter(wallet__isnull=True):
        Wallet.objects.create(account=account)


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_wallet")]

    operations = [migrations.RunPython(load, migrations.RunPython.noop)]
