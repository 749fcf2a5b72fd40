"""Usage records, roll-ups and alerts moved from `billing` to their own apps (issue 21); the
staff groups of migration 0008 keep seeing them. Their content types were relabelled, so an
upgraded database's groups already hold these permissions: this run changes nothing there,
and in a fresh database it adds what 0008 could not name yet."""

import importlib

from django.db import migrations

STAFF_GROUPS = importlib.import_module("console.migrations.0008_staff_groups")


class Migration(migrations.Migration):
    dependencies = [
        ("console", "0013_outgoing_email"),
        ("billing", "0011_usage_and_alerts_move_out"),
    ]

    operations = [migrations.RunPython(STAFF_GROUPS.groups, migrations.RunPython.noop)]
