"""The Celery app, the one schedule file, and a real worker running the first job."""

import importlib
import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
from celery.schedules import crontab
from django.conf import settings
from django.utils import timezone

from config.celery import app
from config.schedule import BEAT_SCHEDULE
from console.models import Invitation
from console.services import invitations_purge_expired
from tests.conftest import requires_postgres
from tests.factories import make_account, make_user
from tests.workers import celery_worker

ROOT = Path(__file__).resolve().parents[2]


def test_every_schedule_is_a_crontab_with_expires_and_a_registered_task():
    assert BEAT_SCHEDULE, "the schedule file has no jobs"
    for name, entry in BEAT_SCHEDULE.items():
        assert isinstance(entry["schedule"], crontab), name
        assert entry["options"]["expires"] > 0, name
        importlib.import_module(entry["task"].rsplit(".", 1)[0])
        assert entry["task"] in app.tasks, f"{name}: {entry['task']} is not a registered task"


def test_every_schedule_entry_has_a_comment():
    source = (ROOT / "config" / "schedule.py").read_text()
    for name in BEAT_SCHEDULE:
        assert re.search(rf"#[^\n]*\n(?:\s*#[^\n]*\n)*\s*\"{re.escape(name)}\"", source), name


def test_worker_settings_make_tasks_safe_to_redeliver():
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    # A task still running is never handed to a second worker.
    assert visibility >= 2 * app.conf.task_time_limit


def _old_invitation(account, email, **dates):
    return Invitation.objects.create(
        account=account,
        email=email,
        role="viewer",
        token_hash=email,
        expires_at=timezone.now() - timedelta(days=40),
        **dates,
    )


@pytest.mark.django_db
def test_the_purge_deletes_only_old_invitations_and_is_idempotent():
    account = make_account(make_user())
    _old_invitation(account, "old@example.com")
    fresh = Invitation.objects.create(
        account=account,
        email="fresh@example.com",
        role="viewer",
        token_hash="fresh",
        expires_at=timezone.now() + timedelta(days=3),
    )
    assert invitations_purge_expired() == 1
    assert invitations_purge_expired() == 0
    assert list(Invitation.objects.all()) == [fresh]


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_the_job_from_the_redis_broker(redis_client):
    account = make_account(make_user())
    _old_invitation(account, "stale@example.com")
    with celery_worker() as output:
        app.send_task("console.tasks.purge_old_invitations")
        deadline = time.monotonic() + 60
        while Invitation.objects.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not Invitation.objects.exists(), "the worker did not run the job within 60 s"
    assert "purge_old_invitations deleted=1" in output[0]
