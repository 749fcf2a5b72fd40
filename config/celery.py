import logging
import os

from celery import Celery, signals
from celery.worker.consumer.consumer import Consumer
from django.core.management.base import SystemCheckError

from billing.checks import refuse_unsafe_production
from config.schedule import BEAT_SCHEDULE

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("console")
app.config_from_object("django.conf:settings", namespace="CELERY")
# All periodic schedules live in one file: config/schedule.py.
app.conf.beat_schedule = BEAT_SCHEDULE
app.autodiscover_tasks()


@signals.setup_logging.connect
def use_the_consoles_logging(**kwargs):
    """Workers and beat log through settings.LOGGING (its handlers mask API keys) instead of
    the handlers Celery would put on the root logger."""
    import logging.config

    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


@signals.worker_init.connect
def refuse_to_work_unsafely(**kwargs):
    """A worker settles card payments and runs auto-recharge: in production (HTTPS=true) it
    refuses the sandbox card provider as the web servers do (config/asgi.py), with the same
    message. Celery logs and ignores an exception from a signal handler, so this exits."""
    try:
        refuse_unsafe_production()
    except SystemCheckError as error:
        raise SystemExit(str(error)) from error


def _keep_consuming_after_broker_loss(after_connection_error):
    """Celery 5.7 with the Redis broker: when the connection drops, the consumer first
    collects the connection (which detaches its transport) and then closes it; closing the
    default channel tries to put the worker's unacknowledged messages (ETA tasks, late acks)
    back through the detached transport and raises AttributeError, which ends the worker
    ("Unrecoverable error"). With the broker gone they cannot be put back anyway (a Redis
    that keeps nothing on disk has lost them; the database sweeps redo that work), so let
    that close fail and reconnect, as the worker does when it held no such message.
    drills/test_dependencies.py restarts Redis under a worker holding one."""

    def handler(consumer, exc):
        try:
            after_connection_error(consumer, exc)
        except AttributeError:
            logging.getLogger("config.celery").warning(
                "broker connection lost: the worker's unacknowledged messages were not put "
                "back (the database sweeps redo their work)",
                exc_info=True,
            )

    return handler


Consumer.on_connection_error_after_connected = _keep_consuming_after_broker_loss(
    Consumer.on_connection_error_after_connected
)

# Runs of the scheduled jobs are recorded for the staff job page (Celery's task signals).
# Imported last: portal/jobs.py reads this module's app when it looks up a task.
import portal.jobs  # noqa: E402, F401
