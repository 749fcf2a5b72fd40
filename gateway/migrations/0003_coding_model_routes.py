"""Route every coding-plan model that has no route yet to the built-in simulator (issue 22):
GLM-5-Code has no pay-as-you-go price, so 0002 (which routes priced models) left it out, and
the coding endpoint must serve it. The pay-as-you-go endpoint still refuses it (no price)."""

from django.db import migrations


def routes(apps, schema_editor):
    UpstreamRoute = apps.get_model("gateway", "UpstreamRoute")
    CodingModel = apps.get_model("plans", "CodingModel")
    for model in CodingModel.objects.order_by("model").values_list("model", flat=True):
        UpstreamRoute.objects.get_or_create(model=model, defaults={"base_url": "simulator"})


class Migration(migrations.Migration):
    dependencies = [
        ("gateway", "0002_simulator_routes"),
        ("plans", "0002_load_catalogue"),
    ]

    operations = [migrations.RunPython(routes, migrations.RunPython.noop)]
