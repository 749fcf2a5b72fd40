"""A background export requested while the broker is down: the request answers, the sweep
enqueues it again once the broker is back, and one no worker started within
HISTORY_EXPORT_START_MINUTES fails with a message on its page instead of waiting for ever."""

from datetime import timedelta
from unittest import mock

import pytest
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnavailable

from history import tasks
from history.models import HistoryExport
from history.services import history_export_build, history_exports_sweep
from tests.history.test_export_delete_privacy import write

pytestmark = pytest.mark.django_db


@pytest.fixture
def requested_while_the_broker_is_down(
    client, world, monkeypatch, django_capture_on_commit_callbacks
):
    from history import views

    monkeypatch.setattr(views, "EXPORT_LIMIT", 1)
    for index in range(3):
        write(world.account_a, f"智谱 row {index}")
    client.force_login(world.developer_a.user)
    with (
        mock.patch.object(
            tasks.build_history_export, "apply_async", side_effect=BrokerUnavailable("down")
        ),
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = client.post(reverse("history:export_start"), {"q": "智谱", "format": "csv"})
    export = HistoryExport.objects.get()
    # The request answers cleanly: to the export's page, which says it is waiting.
    assert response.status_code == 302
    assert response["Location"] == reverse("history:export_status", args=[export.pk])
    page = client.get(response["Location"])
    assert page.status_code == 200 and "Waiting" in page.content.decode()
    return export


def test_the_sweep_enqueues_an_export_whose_task_never_started(
    client, requested_while_the_broker_is_down, monkeypatch
):
    export = requested_while_the_broker_is_down
    built = []

    def worker(args, **options):  # the broker is back: a worker runs what is enqueued
        built.append(args[0])
        history_export_build(export_id=args[0])

    monkeypatch.setattr(tasks.build_history_export, "apply_async", worker)
    assert history_exports_sweep() == {"requeued": 0, "failed": 0}, "its own task goes first"

    result = history_exports_sweep(now=timezone.now() + timedelta(minutes=3))

    assert result == {"requeued": 1, "failed": 0}
    assert built == [export.pk]
    export.refresh_from_db()
    assert (export.status, export.rows_done) == ("done", 3)
    assert (
        "Download"
        in client.get(reverse("history:export_status", args=[export.pk])).content.decode()
    )
    assert history_exports_sweep(now=timezone.now() + timedelta(hours=1))["requeued"] == 0


def test_an_export_no_worker_started_in_time_fails_with_a_message(
    client, requested_while_the_broker_is_down, settings
):
    export = requested_while_the_broker_is_down
    settings.HISTORY_EXPORT_START_MINUTES = 30
    with mock.patch.object(
        tasks.build_history_export, "apply_async", side_effect=BrokerUnavailable("still down")
    ):
        assert history_exports_sweep(now=timezone.now() + timedelta(minutes=10)) == {
            "requeued": 0,
            "failed": 0,
        }
        assert history_exports_sweep(now=timezone.now() + timedelta(minutes=31)) == {
            "requeued": 0,
            "failed": 1,
        }

    export.refresh_from_db()
    assert (export.status, export.failure) == ("failed", "not_started")
    page = client.get(reverse("history:export_status", args=[export.pk])).content.decode()
    assert "could not start" in page and "every 2s" not in page, "told, and no longer polling"
    history_export_build(export_id=export.pk)  # a task that turns up late changes nothing
    export.refresh_from_db()
    assert (export.status, export.file.name) == ("failed", "")


def test_a_running_export_whose_worker_was_lost_fails_after_the_bound(
    client, requested_while_the_broker_is_down
):
    export = requested_while_the_broker_is_down
    HistoryExport.objects.filter(pk=export.pk).update(status="running")  # then the worker died
    assert history_exports_sweep(now=timezone.now() + timedelta(minutes=40))["failed"] == 0
    assert history_exports_sweep(now=timezone.now() + timedelta(minutes=60))["failed"] == 1
    export.refresh_from_db()
    assert (export.status, export.failure) == ("failed", "interrupted")
    page = client.get(reverse("history:export_status", args=[export.pk])).content.decode()
    assert "The export failed" in page and "every 2s" not in page
