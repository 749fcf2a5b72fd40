"""Runs of the scheduled jobs: recorded from Celery's signals, purged after 30 days, shown to
staff with the next run; and the hygiene every schedule entry must have."""

import importlib
import logging
import time
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from celery.schedules import crontab
from django.db import OperationalError
from django.urls import reverse
from django.utils import timezone

from config.celery import app
from config.schedule import BEAT_SCHEDULE
from console import services
from console.models import JobRun
from console.services import job_runs_purge
from portal import jobs
from portal.jobs import job_statuses, next_run_at, schedule_in_words
from tests.conftest import requires_postgres
from tests.console.test_jobs import _old_invitation
from tests.factories import login_verified, make_account, make_user
from tests.workers import celery_worker

PURGE = "console.tasks.purge_old_invitations"


@pytest.fixture(autouse=True)
def _tasks_registered():
    """A worker imports every task module; a test process imports what it needs."""
    for entry in BEAT_SCHEDULE.values():
        importlib.import_module(entry["task"].rsplit(".", 1)[0])


# --- Hygiene of the schedule ----------------------------------------------------------------


def test_every_entry_is_a_crontab_with_expires_and_a_safe_bounded_task():
    for name, entry in BEAT_SCHEDULE.items():
        assert isinstance(entry["schedule"], crontab), name
        assert entry["options"]["expires"] > 0, name
        task = app.tasks[entry["task"]]
        assert task.acks_late is True, f"{name}: acks_late"
        assert task.max_retries is not None and 0 < task.max_retries <= 10, f"{name}: retries"
        # Narrow: retried for what a retry can fix, never for every exception.
        assert task.autoretry_for, f"{name}: autoretry_for"
        assert Exception not in task.autoretry_for and BaseException not in task.autoretry_for
        assert task.retry_backoff, f"{name}: retry_backoff"
        # The staff page shows the first line of the docstring.
        assert (task.__doc__ or "").strip(), f"{name}: {entry['task']} has no docstring"


def test_the_schedule_holds_every_job_of_the_design():
    tasks = {entry["task"] for entry in BEAT_SCHEDULE.values()}
    assert {
        "history.tasks.purge_expired_history",
        "billing.tasks.expire_packs",
        "usage.tasks.reconcile_rollups",
        "billing.tasks.make_monthly_statements",
        "keys.tasks.flush_last_used",
        "billing.tasks.sweep_pending_payments",
        "billing.tasks.auto_recharge_sweep",
        "console.tasks.purge_old_job_runs",
    } <= tasks


# --- Next run and schedule in words ---------------------------------------------------------


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        (crontab(), "2026-03-01 10:00:30", "2026-03-01 10:01:00"),
        (crontab(minute="*/10"), "2026-03-01 10:55:00", "2026-03-01 11:00:00"),
        (crontab(minute=7), "2026-03-01 23:30:00", "2026-03-02 00:07:00"),
        (crontab(minute=17, hour=3), "2026-03-01 03:16:59", "2026-03-01 03:17:00"),
        # Strictly after: a job that fires at this minute next fires tomorrow.
        (crontab(minute=17, hour=3), "2026-03-01 03:17:00", "2026-03-02 03:17:00"),
        (crontab(minute=30, hour=18), "2026-12-31 19:00:00", "2027-01-01 18:30:00"),
        (crontab(minute=0, hour=0, day_of_month=1), "2026-02-14 12:00:00", "2026-03-01 00:00:00"),
    ],
)
def test_next_run_is_the_first_firing_after_the_given_time(schedule, after, expected):
    assert next_run_at(schedule, after=at(after)) == at(expected)


def test_schedules_read_in_words():
    assert schedule_in_words(crontab()) == "Every minute"
    assert schedule_in_words(crontab(minute="*/5")) == "Every 5 minutes"
    assert schedule_in_words(crontab(minute=7)) == "Hourly at minute 7"
    assert schedule_in_words(crontab(minute=5, hour=3)) == "Daily at 03:05 UTC"
    assert schedule_in_words(crontab(minute=0, hour=0, day_of_month=1)) == (
        "Cron “0 0 1 * *” (UTC)"
    )


# --- Recording ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_periodic_run_is_recorded_with_its_result():
    account = make_account(make_user())
    _old_invitation(account, "old@example.com")
    app.tasks[PURGE].apply()
    run = JobRun.objects.get()
    assert (run.task_name, run.outcome, run.summary) == (PURGE, "success", "1")
    assert run.task_id and run.hostname
    assert run.started_at <= run.finished_at and run.duration_ms >= 0


@pytest.mark.django_db
def test_a_failure_is_recorded_without_credentials_and_the_task_still_fails(monkeypatch):
    def broken():
        raise ValueError("cannot reach redis://default:s3cret@10.0.0.5:6379/0\nsecond line")

    monkeypatch.setattr(services, "invitations_purge_expired", broken)
    result = app.tasks[PURGE].apply()
    assert result.failed()
    run = JobRun.objects.get()
    assert run.outcome == "failure"
    assert run.summary == "ValueError: cannot reach redis://***@10.0.0.5:6379/0"
    assert "s3cret" not in run.summary


@pytest.mark.django_db
def test_a_retry_is_recorded_then_the_successful_attempt(monkeypatch):
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("the database went away")
        return 0

    monkeypatch.setattr(services, "invitations_purge_expired", flaky)
    app.tasks[PURGE].apply()
    outcomes = sorted(JobRun.objects.values_list("outcome", "summary"))
    assert outcomes == [("retry", "OperationalError: the database went away"), ("success", "0")]


@pytest.mark.django_db
def test_tasks_outside_the_schedule_are_not_recorded():
    app.tasks["billing.tasks.confirm_payment"].apply(args=[0])
    assert not JobRun.objects.exists()


@pytest.mark.django_db
def test_a_failure_to_record_never_fails_the_task(caplog):
    with (
        mock.patch.object(JobRun.objects, "create", side_effect=RuntimeError("disk full")),
        caplog.at_level(logging.ERROR, logger="portal.jobs"),
    ):
        result = app.tasks[PURGE].apply()
    assert result.successful() and result.get() == 0
    assert "could not record the run" in caplog.text


@pytest.mark.django_db
def test_runs_older_than_30_days_are_purged():
    now = timezone.now()

    def run(age):
        return JobRun.objects.create(
            task_name=PURGE,
            started_at=now - age,
            finished_at=now - age,
            duration_ms=1,
            outcome="success",
        )

    run(timedelta(days=31))
    kept = run(timedelta(days=29))
    assert job_runs_purge(now=now) == 1
    assert job_runs_purge(now=now) == 0
    assert list(JobRun.objects.all()) == [kept]


# --- The staff page -------------------------------------------------------------------------


def _run(task, outcome, *, minutes_ago, summary=""):
    started = timezone.now() - timedelta(minutes=minutes_ago)
    return JobRun.objects.create(
        task_name=task,
        started_at=started,
        finished_at=started + timedelta(seconds=2),
        duration_ms=2000,
        outcome=outcome,
        summary=summary,
        hostname="celery@worker-1",
    )


@pytest.mark.django_db
def test_statuses_give_the_last_run_and_the_last_failure_of_each_job():
    failed = _run(PURGE, "failure", minutes_ago=30, summary="OperationalError: gone")
    latest = _run(PURGE, "success", minutes_ago=5)
    _run(PURGE, "success", minutes_ago=60)
    now = timezone.now()
    statuses = {status.name: status for status in job_statuses(now=now)}
    assert set(statuses) == set(BEAT_SCHEDULE)
    purge = statuses["purge-old-invitations"]
    assert (purge.last_run, purge.last_failure) == (latest, failed)
    assert purge.description == "Delete invitations expired, accepted or revoked over 30 days ago."
    assert purge.next_run_at > now
    never = statuses["expire-resource-packs"]
    assert (never.last_run, never.last_failure) == (None, None)
    assert never.schedule == "Every 10 minutes"


@pytest.mark.django_db
def test_staff_see_every_job_with_its_last_run(client):
    _run(PURGE, "failure", minutes_ago=3, summary="OperationalError: the database went away")
    login_verified(client, make_user("staff@example.com", is_staff=True))
    response = client.get(reverse("staff_jobs"))
    assert response.status_code == 200
    page = response.content.decode()
    for name, entry in BEAT_SCHEDULE.items():
        assert name in page and entry["task"] in page
    assert "OperationalError: the database went away" in page
    assert "2000 ms on celery@worker-1" in page


@pytest.mark.django_db
def test_other_users_get_a_404_and_anonymous_the_sign_in(client):
    assert client.get(reverse("staff_jobs"))["Location"].startswith(reverse("login"))
    client.force_login(make_user("member@example.com"))
    assert client.get(reverse("staff_jobs")).status_code == 404


@pytest.mark.django_db
def test_the_back_office_and_the_user_menu_link_the_page(client):
    login_verified(client, make_user("staff@example.com", is_staff=True, is_superuser=True))
    link = f'href="{reverse("staff_jobs")}"'
    assert link in client.get(reverse("admin:index")).content.decode()
    assert link in client.get(reverse("staff_jobs")).content.decode()


# --- A real worker --------------------------------------------------------------------------


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_records_the_run_with_its_hostname(redis_client):
    with celery_worker():
        app.send_task(PURGE)
        deadline = time.monotonic() + 60
        while not JobRun.objects.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
    run = JobRun.objects.get()
    assert (run.task_name, run.outcome, run.summary) == (PURGE, "success", "0")
    assert run.hostname.startswith("celery@")


def test_the_recorder_reads_the_schedule():
    assert jobs.periodic_task_names() == {entry["task"] for entry in BEAT_SCHEDULE.values()}


def test_the_staff_page_describes_a_job_by_its_docstrings_whole_first_paragraph():
    from portal.jobs import _first_doc_paragraph

    described = _first_doc_paragraph("alerts.tasks.sweep_alerts")
    assert described == (
        "Every account with usage today or an alert set: spikes, packs, and any crossing "
        "whose evaluation task was lost."
    )
