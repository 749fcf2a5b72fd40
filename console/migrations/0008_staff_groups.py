"""The back-office's staff roles as groups (issue 10): Support and Finance staff.

Superusers hold every permission without a group. A member of either group also needs
`is_staff` to sign in to the admin. Support is read-only and never sees prompt content (the
prompt log and its exports are left out, as for finance and viewer members in the console);
finance staff also perform the money actions and download the finance exports. Groups are
made with get_or_create and their permissions set (not added to), so running this again
changes nothing, and a permission removed here is removed from the group.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

SUPPORT = "Support"
FINANCE_STAFF = "Finance staff"

# "usage" and "alerts" held models of "billing" until issue 21 (migration 0014 reruns this);
# "plans" came with issue 22 (plans.0004 reruns this).
SUPPORT_APPS = [
    "console",
    "billing",
    "usage",
    "alerts",
    "plans",
    "keys",
    "projects",
    "history",
    "gateway",
    "notifications",
]
# Prompt content: the prompt log and the exports made from it.
SUPPORT_EXCLUDED = [("history", "view_promptlog"), ("history", "view_historyexport")]

FINANCE_APPS = ["billing", "usage", "alerts", "plans", "console", "keys", "projects"]
FINANCE_ACTIONS = [
    "staff_grant_bonus",
    "staff_confirm_transfer",
    "staff_refund",
    "staff_grant_pack",
    "staff_export_finance",
    # Added for the coding plan (plans.0008 reruns this): grant, extend, change, end, refund.
    "staff_manage_plan",
]


def _create_permissions(apps):
    # In a fresh database permissions are only made after every migration has run
    # (post_migrate); make them now so the groups below can hold them.
    # Migration state's app configs have no models module, which create_permissions skips;
    # the real registry's (the tests' reseed after a flush) keep theirs.
    for app_config in apps.get_app_configs():
        models_module = getattr(app_config, "models_module", None)
        app_config.models_module = models_module or True
        create_permissions(app_config, verbosity=0, apps=apps)
        app_config.models_module = models_module


def _view_permissions(Permission, app_labels, excluded=()):
    permissions = Permission.objects.filter(
        content_type__app_label__in=app_labels, codename__startswith="view_"
    )
    return [p for p in permissions if (p.content_type.app_label, p.codename) not in excluded]


def groups(apps, schema_editor):
    _create_permissions(apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")

    support, _created = Group.objects.get_or_create(name=SUPPORT)
    support.permissions.set(_view_permissions(Permission, SUPPORT_APPS, SUPPORT_EXCLUDED))

    finance, _created = Group.objects.get_or_create(name=FINANCE_STAFF)
    actions = Permission.objects.filter(
        content_type__app_label="console", codename__in=FINANCE_ACTIONS
    )
    finance.permissions.set([*_view_permissions(Permission, FINANCE_APPS), *actions])


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=[SUPPORT, FINANCE_STAFF]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "__latest__"),
        ("contenttypes", "__latest__"),
        ("console", "0007_staff_permissions"),
        ("billing", "0010_alerts"),
        ("keys", "0001_initial"),
        ("projects", "0002_project_cap"),
        ("history", "0004_export"),
        ("gateway", "0002_simulator_routes"),
        ("notifications", "0001_initial"),
    ]

    operations = [migrations.RunPython(groups, remove_groups)]
