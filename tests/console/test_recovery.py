"""Recovering from a dependency restart without restarting our processes: the database
pool reconnects soon after PostgreSQL is back, and a Celery worker keeps consuming when its
Redis broker went away while it held messages it had not acknowledged (ETA tasks, late
acks), where Celery 5.7 would end the worker (config/celery.py says why).
drills/test_dependencies.py restarts a real PostgreSQL and Redis under load; these check
that the settings and the handler are in place."""

import logging

import pytest
from celery.worker.consumer.consumer import Consumer

from config.celery import _keep_consuming_after_broker_loss
from tests.conftest import requires_postgres


@requires_postgres
def test_the_pool_gives_up_its_reconnection_backoff_soon(settings):
    """psycopg's default (300 s) lets the retry delay double past the outage: a web process
    kept requests waiting up to ~9 s after a 17 s restart was over."""
    pool = settings.DATABASES["default"]["OPTIONS"]["pool"]
    assert pool["reconnect_timeout"] <= pool["timeout"]


def test_the_consumer_handler_is_the_one_that_survives_the_close():
    handler = Consumer.on_connection_error_after_connected
    assert handler.__qualname__.startswith("_keep_consuming_after_broker_loss.")


def test_a_close_that_cannot_put_messages_back_is_logged_not_fatal(caplog):
    seen = []

    def celery_handler(consumer, exc):
        seen.append(exc)
        # What kombu raises closing a channel whose transport collect() detached.
        raise AttributeError("'NoneType' object has no attribute 'hostname'")

    lost = ConnectionError("Connection closed by server.")
    with caplog.at_level(logging.WARNING, logger="config.celery"):
        _keep_consuming_after_broker_loss(celery_handler)(object(), lost)
    assert seen == [lost]
    assert "were not put back" in caplog.text


def test_other_errors_still_reach_the_worker():
    def celery_handler(consumer, exc):
        raise RuntimeError("not the detached-transport close")

    with pytest.raises(RuntimeError):
        _keep_consuming_after_broker_loss(celery_handler)(object(), ConnectionError())
