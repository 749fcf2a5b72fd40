import os

from celery import Celery

from console.schedule import BEAT_SCHEDULE

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

app = Celery("console")
app.config_from_object("django.conf:settings", namespace="CELERY")
# All periodic schedules live in one file: console/schedule.py.
app.conf.beat_schedule = BEAT_SCHEDULE
app.autodiscover_tasks()

# Runs of the scheduled jobs are recorded for the staff job page (Celery's task signals).
import console.jobs  # noqa: E402, F401
