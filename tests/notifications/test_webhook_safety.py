"""What a webhook endpoint must not be able to do: point the sender at the console's own
network (SSRF), loop for ever on a host nobody can encode, or hold an attempt past its lease
by trickling its answer; and what the audit log and error reports must not keep."""

import json
import socket
import threading
import time
from datetime import timedelta
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.urls import reverse
from django.utils import timezone
from django.views.debug import ExceptionReporter

from console.models import AuditEvent
from console.secrets_at_rest import decrypt_secret
from console.services import ServiceError
from notifications import tasks, webhooks
from notifications.models import WebhookDelivery, WebhookEndpoint
from notifications.services import notify
from notifications.webhooks import webhook_endpoint_create, webhook_url_check

pytestmark = pytest.mark.django_db

UNENCODABLE = ["http://xn--ls8h.la/", "http://exa\u00admple.com/"]
PRIVATE = [
    "http://127.0.0.1:8000/hook",
    "http://localhost/hook",
    "http://api.localhost/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.1.2.3/hook",
    "http://192.168.0.10/hook",
    "http://172.16.5.4/hook",
    "http://100.64.0.1/hook",
    "http://0.0.0.0/hook",
    "http://224.0.0.1/hook",
    "http://240.0.0.1/hook",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[fe80::1]/hook",
    "http://[fd00::1]/hook",
]


def _notify(account, event_id="evt-1"):
    notify(
        account=account,
        event_type="alert.balance_low",
        event_id=event_id,
        title="T",
        body="B",
        email=False,
        in_app=False,
    )
    return WebhookDelivery.objects.get(event_id=event_id)


def _attempt_all(delivery, times):
    for _ in range(times):
        delivery.refresh_from_db()
        webhooks.webhook_deliver(
            delivery_id=delivery.pk, now=delivery.next_attempt_at or timezone.now()
        )
    delivery.refresh_from_db()
    return delivery


# --- Hosts nobody can encode ----------------------------------------------------------------


@pytest.mark.parametrize("url", UNENCODABLE)
def test_a_host_that_cannot_be_encoded_is_refused_when_saved(world, client, url):
    with pytest.raises(ServiceError):
        webhook_url_check(url)
    client.force_login(world.owner_a)
    response = client.post(reverse("notifications:webhook_create"), {"url": url})
    assert response.status_code == 422
    assert "host name of this URL is not valid" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize("url", UNENCODABLE)
def test_an_unsendable_url_fails_after_the_last_attempt_instead_of_looping(world, settings, url):
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    webhook_endpoint_create(
        account=world.account_a, url="https://hooks.example.com/", actor=None, ip=None
    )
    WebhookEndpoint.objects.update(url=url)  # saved before the check existed
    delivery = _attempt_all(_notify(world.account_a), 6)
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 3, None)
    assert len(delivery.attempt_log) == 3
    assert all(entry["error"] and entry["status_code"] is None for entry in delivery.attempt_log)
    assert url not in json.dumps(delivery.attempt_log)
    assert webhooks.deliveries_due(now=timezone.now() + timedelta(days=1)) == []


# --- SSRF -----------------------------------------------------------------------------------


@pytest.mark.parametrize("url", PRIVATE)
def test_a_private_address_is_refused_when_saved(world, client, settings, url):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    client.force_login(world.owner_a)
    response = client.post(reverse("notifications:webhook_create"), {"url": url})
    assert response.status_code == 422
    assert "Use a public address" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_public_addresses_and_names_are_accepted_when_saved(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    for url in ("https://93.184.216.34/hook", "https://hooks.example.com/x", "http://[2606::1]/"):
        assert webhook_url_check(url) == url


def test_private_addresses_are_accepted_when_allowed(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    assert webhook_url_check("http://127.0.0.1:8000/hook") == "http://127.0.0.1:8000/hook"


def test_a_private_address_is_refused_when_sent(world, receiver, settings):
    webhook_endpoint_create(account=world.account_a, url=receiver.url, actor=None, ip=None)
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False  # saved while allowed, or via a DNS name
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    delivery = _attempt_all(_notify(world.account_a), 3)
    assert receiver.requests == []
    assert (delivery.status, delivery.last_status_code, delivery.last_error) == (
        "failed",
        None,
        "refused: the address is not public",
    )
    assert len(delivery.attempt_log) == 2


@pytest.mark.parametrize("answers", [["10.0.0.7"], ["93.184.216.34", "169.254.169.254"], ["::1"]])
def test_a_name_that_resolves_to_a_private_address_is_refused_when_sent(world, settings, answers):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    webhook_endpoint_create(
        account=world.account_a, url="http://hooks.example.com/x", actor=None, ip=None
    )
    resolved = [
        (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 80))
        for a in answers
    ]
    with (
        mock.patch("notifications.safe_http.socket.getaddrinfo", return_value=resolved),
        mock.patch("httpcore.SyncBackend.connect_tcp") as connect,
    ):
        delivery = _attempt_all(_notify(world.account_a), 1)
    connect.assert_not_called()
    assert delivery.last_error == "refused: the address is not public"


def test_it_connects_to_the_address_it_checked(world, receiver, settings):
    """The host is resolved once: the connection goes to the checked address, so a DNS
    answer that changes after the check cannot redirect it."""
    port = int(receiver.url.split(":")[2].split("/")[0])
    webhook_endpoint_create(
        account=world.account_a, url=f"http://hooks.example.com:{port}/x", actor=None, ip=None
    )
    resolved = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
    with mock.patch("notifications.safe_http.socket.getaddrinfo", return_value=resolved) as dns:
        delivery = _attempt_all(_notify(world.account_a), 1)
    # Resolved once; the connection then goes to the literal address.
    assert [call.args[0] for call in dns.call_args_list] == ["hooks.example.com", "127.0.0.1"]
    assert delivery.status == "succeeded"
    assert receiver.requests[0]["headers"]["Host"] == f"hooks.example.com:{port}"


# --- A trickling endpoint -------------------------------------------------------------------


@pytest.fixture
def trickler():
    """A server that answers a byte every 50 ms: no phase ever waits long, the whole answer
    takes about 3 seconds."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.recv(65536)
                answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Pad: " + b"a" * 60
                for byte in answer:
                    if stop.is_set():
                        return
                    try:
                        connection.sendall(bytes([byte]))
                    except OSError:
                        break
                    time.sleep(0.05)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    stop.set()
    thread.join(timeout=5)
    listener.close()


def test_a_trickling_endpoint_is_cut_off_at_the_attempts_deadline(world, settings, trickler):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.5
    webhook_endpoint_create(account=world.account_a, url=trickler, actor=None, ip=None)
    started = time.monotonic()
    delivery = _attempt_all(_notify(world.account_a), 1)
    assert time.monotonic() - started < 1.5
    assert (delivery.status, delivery.last_error) == ("pending", "Timed out")


def test_the_lease_is_well_above_an_attempts_deadline():
    assert webhooks.ATTEMPT_LEASE.total_seconds() >= 5 * django_settings.WEBHOOK_TIMEOUT_SECONDS


# --- Audit, error reports, the broker -------------------------------------------------------


def test_the_audit_keeps_the_host_not_the_url(world, client):
    client.force_login(world.owner_a)
    url = "https://hooks.example.com/console?token=tok_s3cret"
    client.post(reverse("notifications:webhook_create"), {"url": url})
    endpoint = WebhookEndpoint.objects.get()
    client.post(reverse("notifications:webhook_delete", args=[endpoint.pk]))
    metadata = dict(
        AuditEvent.objects.filter(action__in=["webhook.create", "webhook.delete"]).values_list(
            "action", "metadata"
        )
    )
    assert metadata == {
        "webhook.create": {"host": "hooks.example.com"},
        "webhook.delete": {"host": "hooks.example.com"},
    }


def test_an_error_report_does_not_show_the_revealed_secret(world, client):
    endpoint = webhook_endpoint_create(
        account=world.account_a, url="https://hooks.example.com/", actor=None, ip=None
    )
    client.force_login(world.owner_a)
    client.raise_request_exception = True
    with (
        mock.patch("notifications.views.render", side_effect=RuntimeError("boom")),
        pytest.raises(RuntimeError) as raised,
    ):
        client.post(reverse("notifications:webhook_reveal", args=[endpoint.pk]))
    secret = decrypt_secret(endpoint.secret_encrypted)
    reporter = ExceptionReporter(None, RuntimeError, raised.value, raised.value.__traceback__)
    frames = reporter.get_traceback_frames()
    detail = [frame for frame in frames if frame["function"] == "_webhook_detail"]
    assert detail, [frame["function"] for frame in frames]
    ours = [frame for frame in frames if frame["filename"].endswith("notifications/views.py")]
    assert secret not in repr([frame["vars"] for frame in ours])


def test_tasks_are_published_without_kombus_retries(world, django_capture_on_commit_callbacks):
    webhook_endpoint_create(
        account=world.account_a, url="https://hooks.example.com/", actor=None, ip=None
    )
    with (
        mock.patch.object(tasks.deliver_webhook, "apply_async") as deliver,
        mock.patch.object(tasks.send_event_email, "apply_async") as email,
        django_capture_on_commit_callbacks(execute=True),
    ):
        notify(account=world.account_a, event_type="t", event_id="e", title="T", body="B")
    delivery = WebhookDelivery.objects.get()
    deliver.assert_called_once_with((delivery.pk,), retry=False)
    [call] = email.call_args_list
    assert call.kwargs == {"retry": False}
