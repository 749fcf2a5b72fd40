# Usage records, roll-ups and spend alerts move to their own apps (`usage`, `alerts`; issue
# 21). The tables keep their names, so the models leave billing's state only; their content
# types are relabelled so permissions and admin history follow them.
from django.db import migrations

MOVED = {
    "usagerecord": "usage",
    "usagehourly": "usage",
    "usagedaily": "usage",
    "alertsettings": "alerts",
    "alertfiring": "alerts",
}


def relabel_content_types(apps, schema_editor, *, forward=True):
    content_type = apps.get_model("contenttypes", "ContentType")
    for model, app_label in MOVED.items():
        source, target = ("billing", app_label) if forward else (app_label, "billing")
        if content_type.objects.filter(app_label=target, model=model).exists():
            continue  # a later post_migrate already made the new one; keep it
        content_type.objects.filter(app_label=source, model=model).update(app_label=target)


def relabel_back(apps, schema_editor):
    relabel_content_types(apps, schema_editor, forward=False)


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0010_alerts"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("usage", "0001_initial"),
        ("alerts", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="UsageRecord"),
                migrations.DeleteModel(name="UsageHourly"),
                migrations.DeleteModel(name="UsageDaily"),
                migrations.DeleteModel(name="AlertFiring"),
                migrations.DeleteModel(name="AlertSettings"),
            ],
            database_operations=[],
        ),
        migrations.RunPython(relabel_content_types, relabel_back),
    ]
