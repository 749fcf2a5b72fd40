"""Webhook deliveries against a real local HTTP server: the signature verifies with the
recipe in docs/webhooks.md, failures are retried with backoff and logged, a delivery fails
after the last attempt, the sweep picks up a lost task, and a real worker does all of it."""

import json
import logging
import socket
import time
from datetime import timedelta

import pytest
from celery.exceptions import Retry
from django.db import transaction
from django.utils import timezone

from console.secrets_at_rest import decrypt_secret
from notifications import tasks, webhooks
from notifications.models import WebhookDelivery, WebhookEndpoint
from notifications.services import notify
from notifications.webhooks import webhook_endpoint_create, webhook_send_test
from tests.conftest import requires_postgres
from tests.factories import make_account, make_user
from tests.notifications.conftest import documented_verifier
from tests.workers import celery_worker

pytestmark = pytest.mark.django_db


def _endpoint(account, url) -> WebhookEndpoint:
    return webhook_endpoint_create(account=account, url=url, actor=None, ip=None)


def _secret(endpoint) -> str:
    endpoint.refresh_from_db()
    return decrypt_secret(endpoint.secret_encrypted)


def _notify(account, event_id="alert:balance_low:1"):
    notify(
        account=account,
        event_type="alert.balance_low",
        event_id=event_id,
        title="Balance below 100.00 CNY",
        body="Recharge soon.",
        link="/billing/",
        data={"threshold": "100.000000000", "balance": "99.500000000"},
        email=False,
        in_app=False,
    )
    return WebhookDelivery.objects.filter(event_id=event_id).first()


def test_a_delivery_verifies_with_the_documented_recipe(world, receiver, settings):
    settings.SITE_URL = "https://console.example.com"
    endpoint = _endpoint(world.account_a, receiver.url)
    delivery = _notify(world.account_a)
    webhooks.webhook_deliver(delivery_id=delivery.pk)
    [request] = receiver.requests
    headers, body = request["headers"], request["body"]
    verify = documented_verifier()
    assert verify(_secret(endpoint), headers["X-Console-Signature"], body)
    # A tampered body, another secret, an old timestamp: all refused.
    assert not verify(_secret(endpoint), headers["X-Console-Signature"], body + b" ")
    assert not verify("whsec_other", headers["X-Console-Signature"], body)
    old = int(time.time()) - 301
    stale = webhooks.webhook_signature(secret=_secret(endpoint), timestamp=old, body=body)
    assert not verify(_secret(endpoint), stale, body)
    assert not verify(_secret(endpoint), "garbage", body)
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Console-Event"] == "alert.balance_low"
    assert headers["X-Console-Delivery"] == str(delivery.pk)
    payload = json.loads(body)
    assert payload == {
        "id": "alert:balance_low:1",
        "type": "alert.balance_low",
        "created": payload["created"],
        "account_id": world.account_a.pk,
        "title": "Balance below 100.00 CNY",
        "body": "Recharge soon.",
        "link": "https://console.example.com/billing/",
        "data": {"threshold": "100.000000000", "balance": "99.500000000"},
    }
    assert abs(payload["created"] - time.time()) < 60
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 1, 200)
    assert delivery.delivered_at is not None


def test_a_failing_endpoint_is_retried_with_backoff_and_each_attempt_logged(
    world, receiver, settings
):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 30
    _endpoint(world.account_a, receiver.url)
    receiver.statuses = [500]
    delivery = _notify(world.account_a)
    before = timezone.now()
    webhooks.webhook_deliver(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 500)
    assert delivery.last_error == "HTTP 500"
    assert before + timedelta(seconds=29) < delivery.next_attempt_at
    assert delivery.next_attempt_at < timezone.now() + timedelta(seconds=31)
    # Not due yet: a duplicate task or an early sweep sends nothing.
    assert webhooks.webhook_deliver(delivery_id=delivery.pk) is None
    assert len(receiver.requests) == 1
    webhooks.webhook_deliver(delivery_id=delivery.pk, now=delivery.next_attempt_at)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 2, 200)
    assert delivery.last_error == ""
    assert [entry["status_code"] for entry in delivery.attempt_log] == [500, 200]
    assert [entry["error"] for entry in delivery.attempt_log] == ["HTTP 500", ""]
    # Both attempts were one delivery, signed afresh each time.
    ids = {request["headers"]["X-Console-Delivery"] for request in receiver.requests}
    assert ids == {str(delivery.pk)}


def test_the_backoff_doubles(settings):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 30
    assert [webhooks.webhook_retry_delay(n).total_seconds() for n in range(1, 8)] == [
        30,
        60,
        120,
        240,
        480,
        960,
        1920,
    ]


def test_the_task_retries_itself_when_the_backoff_is_due(world, receiver):
    _endpoint(world.account_a, receiver.url)
    receiver.statuses = [503]
    delivery = _notify(world.account_a)
    with pytest.raises(Retry):
        tasks.deliver_webhook.run(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.next_attempt_at > timezone.now() + timedelta(seconds=25)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    assert tasks.deliver_webhook.run(delivery.pk) == "succeeded"
    assert tasks.deliver_webhook.run(delivery.pk) == "not due"
    assert len(receiver.requests) == 2


def test_it_fails_after_the_last_attempt(world, receiver, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    _endpoint(world.account_a, receiver.url)
    receiver.statuses = [500] * 10
    delivery = _notify(world.account_a)
    for _ in range(5):
        delivery.refresh_from_db()
        webhooks.webhook_deliver(
            delivery_id=delivery.pk, now=delivery.next_attempt_at or timezone.now()
        )
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 3, None)
    assert len(receiver.requests) == 3
    assert len(delivery.attempt_log) == 3
    assert webhooks.deliveries_due(now=timezone.now() + timedelta(days=1)) == []


def test_a_timeout_and_a_refused_connection_are_failures_too(world, receiver, settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.3
    receiver.delay = 1.0
    _endpoint(world.account_a, receiver.url)
    delivery = _notify(world.account_a)
    webhooks.webhook_deliver(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_status_code, delivery.last_error) == (
        "pending",
        None,
        "Timed out",
    )
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    WebhookEndpoint.objects.update(url=f"http://127.0.0.1:{port}/nothing")
    webhooks.webhook_deliver(delivery_id=delivery.pk, now=delivery.next_attempt_at)
    delivery.refresh_from_db()
    assert delivery.attempts == 2
    assert delivery.last_error == "Connection failed (ConnectError)"


def test_a_redirect_is_not_followed(world, receiver):
    _endpoint(world.account_a, receiver.url)
    receiver.statuses = [302]
    delivery = _notify(world.account_a)
    webhooks.webhook_deliver(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_status_code) == ("pending", 302)


def test_the_sweep_picks_up_a_lost_task(
    world, receiver, eager_tasks, django_capture_on_commit_callbacks
):
    _endpoint(world.account_a, receiver.url)
    with django_capture_on_commit_callbacks(execute=False):  # the task never reaches Redis
        delivery = _notify(world.account_a)
    assert webhooks.deliveries_due() == [delivery.pk]
    assert tasks.sweep_deliveries() == {"webhooks": 1, "emails": 0}
    delivery.refresh_from_db()
    assert delivery.status == "succeeded"
    assert tasks.sweep_deliveries() == {"webhooks": 0, "emails": 0}
    assert len(receiver.requests) == 1


def test_the_sweep_sends_a_lost_email_once(
    world, eager_tasks, mailoutbox, django_capture_on_commit_callbacks
):
    from notifications.models import NotificationEvent

    with django_capture_on_commit_callbacks(execute=False):
        notify(
            account=world.account_a,
            event_type="alert.balance_low",
            event_id="lost-email",
            title="T",
            body="B",
            webhook=False,
        )
    assert tasks.sweep_deliveries() == {"webhooks": 0, "emails": 0}, "too young to be lost"
    NotificationEvent.objects.update(created_at=timezone.now() - timedelta(minutes=5))
    with django_capture_on_commit_callbacks(execute=True):  # the outbox sends on commit
        assert tasks.sweep_deliveries() == {"webhooks": 0, "emails": 1}
        assert tasks.sweep_deliveries() == {"webhooks": 0, "emails": 0}
    assert len(mailoutbox) == 3


def test_a_worker_that_died_mid_attempt_is_swept_after_its_lease(world, receiver):
    _endpoint(world.account_a, receiver.url)
    delivery = _notify(world.account_a)
    claimed = webhooks._claim(delivery.pk, timezone.now())  # then the worker died
    assert claimed.attempts == 1
    assert webhooks.deliveries_due() == []
    later = timezone.now() + webhooks.ATTEMPT_LEASE + timedelta(seconds=1)
    assert webhooks.deliveries_due(now=later) == [delivery.pk]
    webhooks.webhook_deliver(delivery_id=delivery.pk, now=later)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)


def test_a_disabled_endpoint_gets_no_new_events_and_its_pending_ones_fail(world, receiver):
    endpoint = _endpoint(world.account_a, receiver.url)
    pending = _notify(world.account_a, "first")
    webhooks.webhook_endpoint_set_enabled(endpoint=endpoint, enabled=False, actor=None, ip=None)
    assert _notify(world.account_a, "second") is None
    webhooks.webhook_deliver(delivery_id=pending.pk)
    pending.refresh_from_db()
    assert (pending.status, pending.last_error) == ("failed", "Endpoint disabled")
    assert receiver.requests == []


def test_send_test_reaches_that_endpoint_only(
    world, receiver, eager_tasks, django_capture_on_commit_callbacks
):
    endpoint = _endpoint(world.account_a, receiver.url)
    other = _endpoint(world.account_a, receiver.url + "/other")
    with django_capture_on_commit_callbacks(execute=True):
        delivery = webhook_send_test(endpoint=endpoint, actor=world.owner_a, ip=None)
    [request] = receiver.requests
    assert request["path"] == "/hooks/console"
    assert json.loads(request["body"])["type"] == "webhook.test"
    assert documented_verifier()(
        _secret(endpoint), request["headers"]["X-Console-Signature"], request["body"]
    )
    delivery.refresh_from_db()
    assert delivery.status == "succeeded"
    assert not other.deliveries.exists()


def test_the_secret_is_never_logged_nor_in_the_payload(world, receiver, caplog, client):
    caplog.set_level(logging.DEBUG)
    client.force_login(world.owner_a)
    client.post("/notifications/webhooks/new/", {"url": receiver.url})
    endpoint = WebhookEndpoint.objects.get()
    secret = _secret(endpoint)
    assert secret.startswith("whsec_") and len(secret) >= 6 + 43
    assert secret not in endpoint.secret_encrypted
    delivery = _notify(world.account_a)
    webhooks.webhook_deliver(delivery_id=delivery.pk)
    client.post(f"/notifications/webhooks/{endpoint.pk}/reveal/")
    client.post(f"/notifications/webhooks/{endpoint.pk}/rotate/")
    rotated = _secret(endpoint)
    assert rotated != secret
    delivery.refresh_from_db()
    for text in (caplog.text, json.dumps(delivery.payload), receiver.requests[0]["body"].decode()):
        assert secret not in text and rotated not in text
    from console.models import AuditEvent

    audit = json.dumps(list(AuditEvent.objects.values("metadata", "reason")))
    assert secret not in audit and rotated not in audit
    assert set(
        AuditEvent.objects.filter(action__startswith="webhook.").values_list("action", flat=True)
    ) == {"webhook.create", "webhook.reveal_secret", "webhook.rotate_secret"}


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_retries_a_failing_endpoint_until_it_answers(redis_client, receiver):
    account = make_account(make_user())
    endpoint = _endpoint(account, receiver.url)
    receiver.statuses = [500]
    with celery_worker(WEBHOOK_RETRY_BASE_SECONDS=1, WEBHOOK_ALLOW_PRIVATE_NETWORKS=True) as output:
        with transaction.atomic():
            _notify(account)  # committed: its on-commit hook enqueues the task
        deadline = time.monotonic() + 60
        while (
            time.monotonic() < deadline
            and not WebhookDelivery.objects.filter(status="succeeded").exists()
        ):
            time.sleep(0.2)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
        "succeeded",
        2,
        200,
    ), output
    assert [entry["status_code"] for entry in delivery.attempt_log] == [500, 200]
    assert len(receiver.requests) == 2
    verify = documented_verifier()
    for request in receiver.requests:
        assert verify(_secret(endpoint), request["headers"]["X-Console-Signature"], request["body"])
    assert f"webhook_deliver delivery={delivery.pk}" in output[0]
    assert _secret(endpoint) not in output[0]
