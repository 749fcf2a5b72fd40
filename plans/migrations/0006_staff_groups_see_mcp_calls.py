"""Support and Finance staff see the MCP tool calls (0005) read-only, as the rest of the plan's
records: console.0008 rerun, now that the model exists."""

import importlib

from django.db import migrations

STAFF_GROUPS = importlib.import_module("console.migrations.0008_staff_groups")


class Migration(migrations.Migration):
    dependencies = [("plans", "0005_mcp_calls")]

    operations = [migrations.RunPython(STAFF_GROUPS.groups, migrations.RunPython.noop)]
