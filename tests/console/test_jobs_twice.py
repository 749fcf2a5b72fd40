"""Every scheduled job, run twice in a row over realistic data, changes nothing the second
time (issue 9's acceptance). The jobs are read from the schedule file, so a new entry is
covered as soon as it is scheduled."""

import importlib
from datetime import timedelta
from pathlib import Path

import pytest
from django.apps import apps
from django.db import connection
from django.db.models import F
from django.utils import timezone

from billing.models import Payment, ResourcePack, Statement
from billing.payments import (
    auto_recharge_configure,
    payment_start_bank_transfer,
    payment_start_card,
)
from billing.reconciliation import audit_all
from billing.services import pack_grant
from config.celery import app
from config.schedule import BEAT_SCHEDULE
from console.emails import email_queue
from console.models import Account, JobRun, OutgoingEmail
from console.money import NANO_PER_UNIT
from console.shared_state import LocalState
from history.models import HistoryExport, PromptLog
from keys import services as key_services
from keys.models import ApiKey
from keys.services import api_key_create, api_key_mark_used
from plans.models import Plan, PlanTerm
from plans.services import plan_subscribe
from tests.billing.factories import funded_account
from tests.billing.test_payments import PENDING, add_card
from tests.billing.traffic import settle_one
from tests.console.test_jobs import _old_invitation
from usage.models import UsageHourly

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
UNIT = NANO_PER_UNIT


def project_models():
    """Every model of the project's own apps, except the record of job runs itself."""
    for config in apps.get_app_configs():
        if not config.path.startswith(str(ROOT)) or ".venv" in config.path:
            continue
        for model in config.get_models():
            if model is not JobRun:
                yield model


def snapshot() -> dict:
    # Only tables that exist: an app under construction may have models before migrations.
    tables = set(connection.introspection.table_names())
    return {
        model._meta.label: list(model.objects.order_by("pk").values())
        for model in project_models()
        if model._meta.db_table in tables
    }


def changed_tables(before: dict, after: dict) -> list[str]:
    return sorted(label for label in before if before[label] != after[label])


@pytest.fixture
def realistic(settings, monkeypatch):
    """Something for every job to do: old history, an expired pack, an old invitation,
    payments left pending, an account below its auto-recharge threshold, buffered last-used
    times, a roll-up that drifted, last month's statement due, an old job run."""
    settings.SANDBOX_PENDING_SECONDS = 0
    now = timezone.now()
    # Usage, some of it older than the tier's history retention; the account exists
    # since two months so last month's statement is due.
    busy = funded_account(recharge_units=200, bonus_units=20)
    Account.objects.filter(pk=busy.pk).update(created_at=now - timedelta(days=70))
    key = api_key_create(
        account=busy, project=busy.projects.get(is_default=True), label="k", actor=None
    ).key
    for days in (40, 10, 1, 0):
        settle_one(key, at=now - timedelta(days=days, minutes=5))
    drifted = UsageHourly.objects.filter(account=busy).order_by("-hour").first()
    UsageHourly.objects.filter(pk=drifted.pk).update(requests=F("requests") + 7)
    # An expired pack and an old invitation.
    pack, _created = pack_grant(account=busy, tokens=5_000, reference="expiring")
    ResourcePack.objects.filter(pk=pack.pk).update(expires_at=now - timedelta(minutes=1))
    _old_invitation(busy, "stale@example.com")
    # A card payment whose confirmation was lost, and a transfer staff never confirmed.
    payer = funded_account()
    card = payment_start_card(
        account=payer, amount_nano=30 * UNIT, payment_method=add_card(payer, PENDING), actor=None
    )
    transfer = payment_start_bank_transfer(account=payer, amount_nano=80 * UNIT, actor=None)
    Payment.objects.filter(pk=card.pk).update(created_at=now - timedelta(minutes=10))
    Payment.objects.filter(pk=transfer.pk).update(
        created_at=now - timedelta(days=settings.BANK_TRANSFER_VALID_DAYS + 1)
    )
    # Auto-recharge turned on below its threshold (its trigger lost).
    low = funded_account(recharge_units=5)
    add_card(low)
    auto_recharge_configure(
        account=low,
        enabled=True,
        threshold_nano=20 * UNIT,
        amount_nano=100 * UNIT,
        monthly_limit_nano=300 * UNIT,
        actor=None,
    )
    # Last-used times buffered for the flush (the Redis path, on the local stand-in).
    settings.SHARED_STATE_BACKEND = "redis"
    state = LocalState()
    monkeypatch.setattr(key_services, "shared_state", lambda: state)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=None)
    api_key_mark_used(key=key, at=now)
    # A job run past the 30 days kept.
    JobRun.objects.create(
        task_name="console.tasks.purge_old_invitations",
        started_at=now - timedelta(days=40),
        finished_at=now - timedelta(days=40),
        duration_ms=5,
        outcome="success",
    )
    # An email whose task was lost with the broker, and an export no worker ever started.
    lost = email_queue(kind="test", to="lost@example.com", subject="Hello", body="Hello")
    OutgoingEmail.objects.filter(pk=lost.pk).update(next_attempt_at=now - timedelta(minutes=5))
    stuck = HistoryExport.objects.create(
        account=busy, query={}, format="csv", created_at=now - timedelta(hours=1)
    )
    # A coding plan whose paid month has just ended, due for renewal from the balance.
    subscriber = funded_account(recharge_units=200)
    subscription = plan_subscribe(
        account=subscriber,
        plan=Plan.objects.get(code="lite"),
        period="month",
        actor=None,
        now=now - timedelta(days=32),
    )
    return {
        "busy": busy,
        "key": key,
        "subscription": subscription,
        "pack": pack,
        "card": card,
        "transfer": transfer,
        "email": lost,
        "export": stuck,
    }


def run_every_job():
    for entry in BEAT_SCHEDULE.values():
        importlib.import_module(entry["task"].rsplit(".", 1)[0])
        # The task's own function, without Celery around it (no signals, no retries).
        app.tasks[entry["task"]].run()


def test_every_job_run_twice_changes_nothing_the_second_time(realistic):
    before = snapshot()
    run_every_job()
    first = snapshot()
    # The first run had work to do (otherwise the second proves nothing).
    assert changed_tables(before, first), "the first run changed nothing"
    busy = realistic["busy"]
    retention = timedelta(days=busy.tier.retention_days)
    assert not PromptLog.objects.filter(
        account=busy, created_at__lt=timezone.now() - retention
    ).exists()
    assert ResourcePack.objects.get(pk=realistic["pack"].pk).closed_at is not None
    assert Statement.objects.filter(account=busy).exists()
    assert Payment.objects.get(pk=realistic["card"].pk).status == Payment.Status.SUCCEEDED
    assert Payment.objects.get(pk=realistic["transfer"].pk).status == Payment.Status.CANCELLED
    assert Payment.objects.filter(auto=True, status="succeeded").count() == 1
    assert ApiKey.objects.get(pk=realistic["key"].pk).last_used_at is not None
    assert not JobRun.objects.exists()
    assert OutgoingEmail.objects.get(pk=realistic["email"].pk).status == "sent"
    assert HistoryExport.objects.get(pk=realistic["export"].pk).status == "failed"
    assert (
        PlanTerm.objects.filter(subscription=realistic["subscription"], kind="renewal").count() == 1
    )

    run_every_job()
    assert changed_tables(first, snapshot()) == []
    _accounts, problems = audit_all()
    assert not problems
