"""Names that changed when usage and alerts left billing (issue 21) still reach their owners:
tasks queued under the old names run the new tasks, and the audit trail's old target labels
are relabelled by billing.0012 to the ones today's models write."""

import importlib

import pytest
from django.apps import apps

from alerts.models import AlertSettings
from alerts.services import alert_settings_save
from config.celery import app as celery_app
from console.models import AuditEvent
from keys.services import api_key_create
from tests.billing.factories import funded_account
from tests.billing.traffic import settle_one
from tests.factories import make_account, make_user
from usage.models import UsageDaily

pytestmark = pytest.mark.django_db

relabel_migration = importlib.import_module(
    "billing.migrations.0012_audit_targets_follow_moved_models"
)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("billing.tasks.rebuild_rollups", "usage.tasks.rebuild_rollups"),
        ("billing.tasks.reconcile_rollups", "usage.tasks.reconcile_rollups"),
        ("billing.tasks.evaluate_alerts", "alerts.tasks.evaluate_alerts"),
        ("billing.tasks.sweep_alerts", "alerts.tasks.sweep_alerts"),
    ],
)
def test_a_task_queued_under_its_old_name_is_known_to_the_worker(old, new):
    # The worker resolves a message's task name in this registry; an unknown name is dropped.
    assert old in celery_app.tasks
    assert new in celery_app.tasks


def test_the_old_rebuild_name_rebuilds_the_accounts_days():
    account = funded_account(recharge_units=10)
    key = api_key_create(
        account=account, project=account.projects.get(is_default=True), label="k", actor=None
    ).key
    settle_one(key)
    UsageDaily.objects.filter(account=account).delete()
    result = celery_app.tasks["billing.tasks.rebuild_rollups"].apply(args=[account.pk]).get()
    assert result == "0 hourly, 1 daily"
    assert UsageDaily.objects.get(account=account).requests == 1


def test_the_old_rebuild_name_of_a_deleted_account_does_nothing():
    assert celery_app.tasks["billing.tasks.rebuild_rollups"].apply(args=[0]).get() == "gone"


def test_the_old_alert_names_run_the_alert_tasks():
    account = make_account()
    assert celery_app.tasks["billing.tasks.evaluate_alerts"].apply(args=[account.pk]).get() == 0
    assert isinstance(celery_app.tasks["billing.tasks.sweep_alerts"].apply().get(), int)


def test_alert_settings_are_audited_under_their_new_label():
    account = make_account()
    alert_settings_save(account=account, actor=make_user(), spike_tenths=30)
    event = AuditEvent.objects.get(account=account, action="alerts.update")
    assert event.target_type == AlertSettings._meta.label_lower == "alerts.alertsettings"


def test_the_migration_relabels_old_audit_targets_and_back():
    account = make_account()
    old = AuditEvent.objects.create(
        account=account,
        actor_kind="staff",
        action="alerts.update",
        target_type="billing.alertsettings",
    )
    usage = AuditEvent.objects.create(
        account=account, actor_kind="staff", action="x", target_type="billing.usagerecord"
    )
    unrelated = AuditEvent.objects.create(
        account=account, actor_kind="staff", action="y", target_type="billing.wallet"
    )

    made = [old.pk, usage.pk, unrelated.pk]

    relabel_migration.relabel(apps, None)
    labels = dict(AuditEvent.objects.filter(pk__in=made).values_list("pk", "target_type"))
    assert labels == {
        old.pk: "alerts.alertsettings",
        usage.pk: "usage.usagerecord",
        unrelated.pk: "billing.wallet",
    }

    relabel_migration.relabel_back(apps, None)
    labels = dict(AuditEvent.objects.filter(pk__in=made).values_list("pk", "target_type"))
    assert labels == {
        old.pk: "billing.alertsettings",
        usage.pk: "billing.usagerecord",
        unrelated.pk: "billing.wallet",
    }
