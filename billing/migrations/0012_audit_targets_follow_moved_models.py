# The audit trail names its targets by model label ("billing.alertsettings"). The models that
# moved out in 0011 now write "alerts.alertsettings" and so on; old rows are relabelled the same
# way so one filter finds a target's whole history, before and after the upgrade.
from django.db import migrations

MOVED = {
    "usagerecord": "usage",
    "usagehourly": "usage",
    "usagedaily": "usage",
    "alertsettings": "alerts",
    "alertfiring": "alerts",
}


def relabel(apps, schema_editor, *, forward=True):
    audit_event = apps.get_model("console", "AuditEvent")
    for model, app_label in MOVED.items():
        old, new = f"billing.{model}", f"{app_label}.{model}"
        source, target = (old, new) if forward else (new, old)
        audit_event.objects.filter(target_type=source).update(target_type=target)


def relabel_back(apps, schema_editor):
    relabel(apps, schema_editor, forward=False)


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0011_usage_and_alerts_move_out"),
        ("console", "0014_staff_groups_see_usage_and_alerts"),
    ]

    operations = [migrations.RunPython(relabel, relabel_back)]
