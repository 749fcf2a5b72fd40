"""Runs of the periodic jobs: recorded from Celery's task signals, shown to staff.

Only the tasks named in config/schedule.py are recorded (not per-payment confirmations or
per-webhook deliveries): one row per run, written after the run by the process that ran it.
Recording is best effort: a failure to record is logged and never fails the task.

config/celery.py imports this module before Django's apps are ready (config/__init__.py
imports the Celery app while the settings load): models are imported inside the functions,
and so is the Celery app, which is still being built when this module first runs. Runs older
than 30 days are purged by console.services.job_runs_purge (the console's table).
"""

import importlib
import logging
import re
import socket
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from celery import signals
from celery.schedules import crontab
from django.db.models import OuterRef, Subquery
from django.utils import timezone
from django.utils.translation import gettext as _

from config.schedule import BEAT_SCHEDULE

if TYPE_CHECKING:
    from console.models import JobRun

logger = logging.getLogger(__name__)

SUMMARY_LENGTH = 300
SUCCESS, FAILURE, RETRY = "success", "failure", "retry"  # JobRun.Outcome's values

# task id → (wall-clock start, monotonic start), between prerun and postrun of one process.
_started: dict[str, tuple[datetime, float]] = {}
# task id → the error summary from task_failure / task_retry, consumed by postrun.
_errors: dict[str, tuple[str, str]] = {}


def periodic_task_names() -> set[str]:
    # Read at each run, not at import: the schedule is the one list of periodic jobs.
    return {entry["task"] for entry in BEAT_SCHEDULE.values()}


# Credentials in a URL (a broker or database DSN in an error message) never reach the table.
_URL_CREDENTIALS = re.compile(r"(\w+://)[^/\s@]+@")


def error_summary(error: BaseException | None) -> str:
    """The exception's class and the first line of its message, credentials masked."""
    if error is None:
        return ""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return _URL_CREDENTIALS.sub(r"\1***@", text)[:SUMMARY_LENGTH]


def result_summary(value) -> str:
    if value is None:
        return ""
    return repr(value)[:SUMMARY_LENGTH]


def _is_periodic(task) -> bool:
    return task is not None and getattr(task, "name", None) in periodic_task_names()


@signals.task_prerun.connect(dispatch_uid="portal.jobs.prerun")
def _on_prerun(sender=None, task_id=None, task=None, **kwargs):
    if _is_periodic(task):
        _started[task_id] = (timezone.now(), time.monotonic())


@signals.task_failure.connect(dispatch_uid="portal.jobs.failure")
def _on_failure(sender=None, task_id=None, exception=None, **kwargs):
    if _is_periodic(sender):
        _errors[task_id] = (FAILURE, error_summary(exception))


@signals.task_retry.connect(dispatch_uid="portal.jobs.retry")
def _on_retry(sender=None, request=None, reason=None, **kwargs):
    if _is_periodic(sender) and request is not None:
        original = getattr(reason, "exc", None) or reason
        _errors[request.id] = (RETRY, error_summary(original))


@signals.task_postrun.connect(dispatch_uid="portal.jobs.postrun")
def _on_postrun(sender=None, task_id=None, task=None, retval=None, state=None, **kwargs):
    if not _is_periodic(task):
        return
    started = _started.pop(task_id, None)
    error = _errors.pop(task_id, None)
    try:
        job_run_record(
            task=task, task_id=task_id, started=started, state=state, retval=retval, error=error
        )
    except Exception:
        # The task's own outcome stands: the status page just misses this run.
        logger.exception("could not record the run of %s[%s]", task.name, task_id)


def job_run_record(*, task, task_id, started, state, retval, error):
    # Deferred: config/celery.py imports this module before the app registry is ready.
    from console.models import JobRun

    finished_at = timezone.now()
    if started is None:
        started_at, duration_ms = finished_at, 0
    else:
        started_at = started[0]
        duration_ms = max(0, round((time.monotonic() - started[1]) * 1000))
    if error is not None:
        outcome, summary = error
    elif state == "RETRY":
        outcome, summary = RETRY, error_summary(getattr(retval, "exc", retval))
    elif state == "SUCCESS":
        outcome, summary = SUCCESS, result_summary(retval)
    else:
        outcome = FAILURE
        summary = error_summary(retval if isinstance(retval, BaseException) else None)
    hostname = getattr(task.request, "hostname", None) or socket.gethostname()
    return JobRun.objects.create(
        task_name=task.name,
        task_id=task_id or "",
        started_at=started_at,
        finished_at=finished_at,
        duration_ms=min(duration_ms, 2**31 - 1),
        outcome=outcome,
        summary=summary,
        hostname=hostname[:200],
    )


# --- The staff page ------------------------------------------------------------------------


def next_run_at(schedule: crontab, *, after: datetime) -> datetime:
    """The first time strictly after `after` that the crontab fires (in the schedule's
    time zone, UTC for us), as beat would compute it."""
    start, delta, _now = schedule.remaining_delta(after)
    return start + delta


def _field(value) -> str:
    return str(value).replace(" ", "")


def schedule_in_words(schedule: crontab) -> str:
    """The crontab in words for the common shapes; the five cron fields otherwise."""
    minute, hour = _field(schedule._orig_minute), _field(schedule._orig_hour)
    day_of_week = _field(schedule._orig_day_of_week)
    day_of_month = _field(schedule._orig_day_of_month)
    month = _field(schedule._orig_month_of_year)
    every_day = day_of_week == day_of_month == month == "*"
    if every_day and hour == "*":
        if minute == "*":
            return _("Every minute")
        if minute.startswith("*/") and minute[2:].isdigit():
            return _("Every %(count)s minutes") % {"count": minute[2:]}
        if minute.isdigit():
            return _("Hourly at minute %(minute)s") % {"minute": minute}
    if every_day and minute.isdigit() and hour.isdigit():
        return _("Daily at %(time)s UTC") % {"time": f"{int(hour):02d}:{int(minute):02d}"}
    return _("Cron “%(fields)s” (UTC)") % {
        "fields": f"{minute} {hour} {day_of_month} {month} {day_of_week}"
    }


@dataclass(frozen=True)
class JobStatus:
    name: str
    task: str
    description: str
    schedule: str
    expires_seconds: int | None
    last_run: "JobRun | None"
    last_failure: "JobRun | None"
    next_run_at: datetime | None


def _first_doc_paragraph(task_name: str) -> str:
    # Deferred: config/celery.py imports this module while it builds the app.
    from config.celery import app

    # Task modules are imported on demand in web processes (a worker imports them all).
    try:
        importlib.import_module(task_name.rsplit(".", 1)[0])
    except ImportError:
        logger.warning("the scheduled task %s cannot be imported", task_name)
    task = app.tasks.get(task_name)
    doc = (getattr(task, "__doc__", None) or "").strip()
    # The first paragraph, joined: a first line may stop mid-sentence.
    return " ".join(doc.split("\n\n")[0].split()) if doc else ""


def job_statuses(*, now: datetime | None = None) -> list[JobStatus]:
    """Every schedule entry with its last run, last failure and next run: two queries."""
    # Deferred, as in job_run_record.
    from console.models import JobRun

    now = now or timezone.now()
    names = sorted(periodic_task_names())
    latest = JobRun.objects.filter(task_name=OuterRef("task_name")).order_by("-started_at")
    last_runs = {
        run.task_name: run
        for run in JobRun.objects.filter(task_name__in=names, pk=Subquery(latest.values("pk")[:1]))
    }
    failures = latest.filter(outcome=FAILURE)
    last_failures = {
        run.task_name: run
        for run in JobRun.objects.filter(
            task_name__in=names, pk=Subquery(failures.values("pk")[:1])
        )
    }
    statuses = []
    for name, entry in BEAT_SCHEDULE.items():
        schedule = entry["schedule"]
        is_crontab = isinstance(schedule, crontab)
        statuses.append(
            JobStatus(
                name=name,
                task=entry["task"],
                description=_first_doc_paragraph(entry["task"]),
                schedule=schedule_in_words(schedule) if is_crontab else str(schedule),
                expires_seconds=entry.get("options", {}).get("expires"),
                last_run=last_runs.get(entry["task"]),
                last_failure=last_failures.get(entry["task"]),
                next_run_at=next_run_at(schedule, after=now) if is_crontab else None,
            )
        )
    return statuses
