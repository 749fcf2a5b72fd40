"""Finance staff hold the new staff_manage_plan permission (console.0015): console.0008's
groups rerun, now that the permission exists."""

import importlib

from django.db import migrations

STAFF_GROUPS = importlib.import_module("console.migrations.0008_staff_groups")


class Migration(migrations.Migration):
    dependencies = [
        ("plans", "0007_staff_terms"),
        ("console", "0015_staff_manage_plan"),
    ]

    operations = [migrations.RunPython(STAFF_GROUPS.groups, migrations.RunPython.noop)]
