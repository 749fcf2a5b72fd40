"""The back-office's Support and Finance staff groups (console.0008) see the coding plan's
catalogue, read-only, like the rest of the catalogue."""

import importlib

from django.db import migrations

STAFF_GROUPS = importlib.import_module("console.migrations.0008_staff_groups")


class Migration(migrations.Migration):
    dependencies = [
        ("plans", "0002_load_catalogue"),
        ("console", "0014_staff_groups_see_usage_and_alerts"),
    ]

    operations = [migrations.RunPython(STAFF_GROUPS.groups, migrations.RunPython.noop)]
