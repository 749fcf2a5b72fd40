"""The Celery app as the drills run it: `celery -A drills.worker_app worker`.

It is the project's own app (config.celery: same tasks, settings and broker), plus two
things only a drill needs, both driven through the environment and both in the pool child
that runs a task:

- a journal (DRILL_JOURNAL, one JSON line per event): a task's start and end with the pid
  of the process that ran it, so a drill can kill that very process and then see the same
  task id start again in another one;
- a pause after a task has run (DRILL_CONTROL_DIR): while a file named
  `pause-after-<task name>-<args joined by ->` exists there, the child waits in
  `task_postrun`. The task's effect is committed and its message is not acknowledged yet
  (acks_late: the parent acknowledges when the child reports), the worst moment for a kill.
"""

import json
import os
import time
from pathlib import Path

from celery import signals

from config.celery import app

__all__ = ["app"]

JOURNAL = os.environ.get("DRILL_JOURNAL", "")
CONTROL = Path(os.environ.get("DRILL_CONTROL_DIR", "") or "/nonexistent")
# A pause left behind by a failed drill must not hold a worker for ever.
PAUSE_LIMIT_SECONDS = 120


def _journal(event: str, task_id: str, task, args, **extra) -> None:
    if not JOURNAL:
        return
    line = json.dumps(
        {
            "event": event,
            "task_id": task_id,
            "name": getattr(task, "name", ""),
            "args": list(args or ()),
            "pid": os.getpid(),
            "at": time.time(),
            **extra,
        }
    )
    # One short write in append mode: lines from several processes never interleave.
    with open(JOURNAL, "a") as handle:
        handle.write(line + "\n")


def pause_file_name(name: str, args) -> str:
    return "pause-after-" + "-".join([name, *(str(arg) for arg in args)])


@signals.task_prerun.connect
def _started(task_id=None, task=None, args=None, **_):
    delivery = getattr(task.request, "delivery_info", None) or {}
    _journal("start", task_id, task, args, redelivered=bool(delivery.get("redelivered")))


@signals.task_postrun.connect
def _finished(task_id=None, task=None, args=None, state=None, retval=None, **_):
    _journal("end", task_id, task, args, state=state, result=repr(retval)[:200])
    pause = CONTROL / pause_file_name(task.name, args or ())
    if not pause.exists():
        return
    _journal("paused", task_id, task, args)
    deadline = time.monotonic() + PAUSE_LIMIT_SECONDS
    while pause.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    _journal("resumed", task_id, task, args)
