"""The staff groups of migration 0008 hold the view permission of every console model: give
them the two-factor models added since (devices and staff links, never a secret: only
ciphertexts and hashes are stored, and the admin shows neither). 0008's function sets the
permissions, so running it again changes nothing else."""

import importlib

from django.db import migrations

STAFF_GROUPS = importlib.import_module("console.migrations.0008_staff_groups")


class Migration(migrations.Migration):
    dependencies = [("console", "0011_two_factor_secrets_moved")]

    operations = [migrations.RunPython(STAFF_GROUPS.groups, migrations.RunPython.noop)]
