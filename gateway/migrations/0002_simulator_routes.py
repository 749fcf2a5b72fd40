"""Route every priced model to the built-in simulator, so a fresh install answers out of the
box; staff point models at real upstreams in the admin. Only missing routes are created."""

import json
from pathlib import Path

from django.db import migrations


def routes(apps, schema_editor):
    UpstreamRoute = apps.get_model("gateway", "UpstreamRoute")
    prices = Path(__file__).resolve().parents[2] / "billing" / "data" / "prices.json"
    for model in sorted({row["model"] for row in json.loads(prices.read_text())["prices"]}):
        UpstreamRoute.objects.get_or_create(model=model, defaults={"base_url": "simulator"})


class Migration(migrations.Migration):
    dependencies = [("gateway", "0001_initial")]

    operations = [migrations.RunPython(routes, migrations.RunPython.noop)]
