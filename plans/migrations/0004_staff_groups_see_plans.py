"""The back-office's Support and Finance staff groups (console.0008) see the coding plan's
catalogue and the subscriptions, read-only, like the rest of the catalogue and the money."""

import importlib

from django.db import migrations

STAFF_GROUPS = importlib.import_module("console.migrations.0008_staff_groups")


class Migration(migrations.Migration):
    dependencies = [
        ("plans", "0003_subscriptions"),
        ("console", "0014_staff_groups_see_usage_and_alerts"),
    ]

    operations = [migrations.RunPython(STAFF_GROUPS.groups, migrations.RunPython.noop)]
