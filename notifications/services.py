"""Delivering events to an account: in-app notifications, emails and signed webhooks.

`notify` is what the rest of the console calls (alerts, mostly). It only writes rows, so it
is safe inside the caller's transaction; emails and webhook POSTs go out from Celery tasks
enqueued on commit. The rows are the queue of record: a lost task is picked up by the sweep.
"""

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import time
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
import idna
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.db.models import QuerySet
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_variables

from console.emails import email_queue
from console.models import Account, User
from console.roles import PERMISSIONS
from console.services import ServiceError, audit_record
from gateway.upstream import decrypt_secret, encrypt_secret
from notifications.models import (
    Notification,
    NotificationEmail,
    NotificationEvent,
    WebhookDelivery,
    WebhookEndpoint,
)

logger = logging.getLogger(__name__)

RECIPIENT_PERMISSION = "alerts.manage"
SECRET_PREFIX = "whsec_"
URL_MAX_LENGTH = 500
# While an attempt runs, its delivery is leased for this long: far above an attempt's whole
# wall-clock deadline (WEBHOOK_TIMEOUT_SECONDS, see _post), so the sweep never claims and POSTs
# a delivery whose attempt is still running; a worker that died mid-attempt only delays it.
ATTEMPT_LEASE = timedelta(seconds=60)
# A Celery countdown may fire a little early against the database's idea of "due".
DUE_SLACK = timedelta(seconds=2)
# An email whose task has not run after this long is sent by the sweep.
EMAIL_SWEEP_AFTER = timedelta(minutes=2)
SWEEP_BATCH = 500
# Each phase of a POST gets the full timeout, but never past the attempt's deadline.
PHASES = ("connect", "read", "write", "pool")


# --- Recipients and the entry point ---------------------------------------------------------


def alert_recipients(*, account: Account) -> QuerySet[User]:
    """Every active member of `account` whose role may manage alerts (owner, admin, finance)."""
    return User.objects.filter(
        is_active=True,
        memberships__account=account,
        memberships__role__in=list(PERMISSIONS[RECIPIENT_PERMISSION]),
    ).order_by("pk")


def absolute_link(link: str) -> str:
    """A console path as a full URL (for emails and webhooks); full URLs pass unchanged."""
    if link.startswith("/"):
        return settings.SITE_URL + link
    return link


def notify(
    *,
    account: Account,
    event_type: str,
    event_id: str,
    title: str,
    body: str,
    link: str = "",
    data: dict | None = None,
    email: bool = True,
    in_app: bool = True,
    webhook: bool = True,
) -> int:
    """Deliver one event to `account` through the chosen channels; returns how many in-app
    notifications it created.

    Idempotent on (account, event_id): the event row's unique constraint decides, so a
    second call (or a concurrent one) creates and sends nothing. Only writes rows: call it
    inside your transaction; the email and the webhook POSTs are enqueued on commit (and a
    broker outage never fails the caller: the sweep sends what the tasks missed).
    """
    event, created = NotificationEvent.objects.get_or_create(
        account=account,
        event_id=event_id,
        defaults={
            "event_type": event_type,
            "title": str(title)[:200],
            "body": str(body),
            "link": link[:500],
            "data": data or {},
            "email_requested": email,
        },
    )
    if not created:
        logger.info("notify account=%s event=%s duplicate", account.pk, event_id)
        return 0
    created_count = 0
    if in_app:
        rows = Notification.objects.bulk_create(
            [
                Notification(
                    account=account,
                    user=user,
                    event_type=event_type,
                    event_id=event_id,
                    title=event.title,
                    body=event.body,
                    link=event.link,
                )
                for user in alert_recipients(account=account)
            ]
        )
        created_count = len(rows)
    if email:
        _on_commit_enqueue("send_event_email", event.pk)
    deliveries = []
    if webhook:
        endpoints = list(WebhookEndpoint.objects.filter(account=account, enabled=True))
        deliveries = _deliveries_create(event=event, endpoints=endpoints)
        for delivery in deliveries:
            _on_commit_enqueue("deliver_webhook", delivery.pk)
    logger.info(
        "notify account=%s event=%s type=%s in_app=%s email=%s webhooks=%s",
        account.pk,
        event_id,
        event_type,
        created_count,
        email,
        len(deliveries),
    )
    return created_count


def _on_commit_enqueue(task_name: str, object_id: int) -> None:
    def enqueue():
        from notifications import tasks

        # retry=False: with the broker down, fail at once instead of blocking the caller while
        # kombu retries the publish; the row is written and the sweep catches up.
        getattr(tasks, task_name).apply_async((object_id,), retry=False)

    # robust: a broker that is down must not fail the caller's commit; the sweep catches up.
    transaction.on_commit(enqueue, robust=True)


# --- In-app ---------------------------------------------------------------------------------


def notifications_mark_read(
    *, user: User, account: Account, notification: Notification | None = None
) -> int:
    """Mark one notification (or, with none given, all of them) of `user` in `account` read."""
    queryset = Notification.objects.filter(user=user, account=account, read_at__isnull=True)
    if notification is not None:
        queryset = queryset.filter(pk=notification.pk)
    return queryset.update(read_at=timezone.now())


# --- Email ----------------------------------------------------------------------------------


def notification_email_send(*, event_pk: int) -> int:
    """Queue the event's email for each recipient, at most once each; returns how many were
    queued. The outbox (console.emails) sends them, with retries and its own sweep.

    The event row is claimed first (the update's row count says who won), in the same
    transaction as the queued emails and each recipient's record, so a duplicate task or the
    sweep never queues one twice, and a failure queues nothing and leaves the event to the
    task's retry or the sweep."""
    with transaction.atomic():
        claimed = NotificationEvent.objects.filter(
            pk=event_pk, email_requested=True, emailed_at__isnull=True
        ).update(emailed_at=timezone.now())
        if not claimed:
            return 0
        event = NotificationEvent.objects.select_related("account").get(pk=event_pk)
        records = {
            record.user_id: record for record in NotificationEmail.objects.filter(event=event)
        }
        queued = 0
        for user in alert_recipients(account=event.account):
            record = records.get(user.pk) or NotificationEmail(event=event, user=user)
            if record.sent_at is not None:
                continue
            _email_one(event=event, user=user)
            record.attempts += 1
            record.sent_at = timezone.now()  # handed to the outbox
            record.last_error = ""
            record.save()
            queued += 1
    return queued


def _email_one(*, event: NotificationEvent, user: User) -> None:
    with translation.override(user.language or settings.LANGUAGE_CODE):
        email_queue(
            kind="notification",
            to=user.email,
            subject=_("[%(account)s] %(title)s")
            % {"account": event.account.name, "title": event.title},
            body=render_to_string(
                "notifications/email/event.txt",
                {"event": event, "user": user, "link": absolute_link(event.link)},
            ),
        )


def emails_unsent(*, now: datetime | None = None) -> list[int]:
    """Events whose email task was lost (requested, unsent, older than a task takes)."""
    now = now or timezone.now()
    return list(
        NotificationEvent.objects.filter(
            email_requested=True,
            emailed_at__isnull=True,
            created_at__lte=now - EMAIL_SWEEP_AFTER,
        )
        .order_by("created_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )


# --- Webhook endpoints ----------------------------------------------------------------------


def webhook_secret_generate() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def address_is_public(address: str) -> bool:
    """Whether an IP address is on the public internet (not loopback, private, link-local
    such as 169.254.169.254, reserved, multicast or unspecified)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone index is not the address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
    )


def _host_is_private_literal(host: str) -> bool:
    """`localhost` or an IP literal that is not public (a name is checked when it is sent)."""
    host = host.rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return not address_is_public(host)
    except ValueError:
        return False


def webhook_url_check(url: str) -> str:
    """The URL an endpoint may have: http(s), at most 500 characters, no credentials, a host
    the sender can encode, and (unless WEBHOOK_ALLOW_PRIVATE_NETWORKS) not a loopback,
    private, link-local or reserved address."""
    url = url.strip()
    if not url:
        raise ServiceError(_("Enter the URL that should receive the events."))
    if len(url) > URL_MAX_LENGTH:
        raise ServiceError(
            _("Use a URL of at most %(limit)s characters.") % {"limit": URL_MAX_LENGTH}
        )
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError as error:
        raise ServiceError(_("Enter a valid http:// or https:// URL.")) from error
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise ServiceError(
            _("Do not put credentials in the URL: verify the signature header instead.")
        )
    try:
        host = httpx.URL(url).host
        if not _is_ip_literal(host):
            idna.encode(host)
    except Exception as error:  # httpx.InvalidURL, idna's errors: the sender would fail alike
        raise ServiceError(
            _("The host name of this URL is not valid: check it for stray characters.")
        ) from error
    if not settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS and _host_is_private_literal(host):
        raise ServiceError(
            _(
                "Use a public address: loopback, private, link-local and reserved networks "
                "cannot receive webhooks."
            )
        )
    return url


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _audit_host(url: str) -> str:
    """The URL's host only: its path or query may hold the receiver's token."""
    return urlsplit(url).hostname or ""


def webhook_endpoint_create(
    *, account: Account, url: str, description: str = "", actor: User | None, ip: str | None
) -> WebhookEndpoint:
    url = webhook_url_check(url)
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.create(
            account=account,
            url=url,
            description=description.strip()[:200],
            secret_encrypted=encrypt_secret(webhook_secret_generate()),
            created_by=actor,
        )
        audit_record(
            action="webhook.create",
            account=account,
            actor=actor,
            target=endpoint,
            ip=ip,
            metadata={"host": _audit_host(url)},
        )
    return endpoint


def webhook_endpoint_set_enabled(
    *, endpoint: WebhookEndpoint, enabled: bool, actor: User | None, ip: str | None
) -> WebhookEndpoint:
    with transaction.atomic():
        changed = WebhookEndpoint.objects.filter(pk=endpoint.pk).exclude(enabled=enabled)
        if changed.update(enabled=enabled):
            audit_record(
                action="webhook.enable" if enabled else "webhook.disable",
                account=endpoint.account,
                actor=actor,
                target=endpoint,
                ip=ip,
            )
    endpoint.enabled = enabled
    return endpoint


def webhook_endpoint_delete(
    *, endpoint: WebhookEndpoint, actor: User | None, ip: str | None
) -> None:
    with transaction.atomic():
        audit_record(
            action="webhook.delete",
            account=endpoint.account,
            actor=actor,
            target=endpoint,
            ip=ip,
            metadata={"host": _audit_host(endpoint.url)},
        )
        endpoint.delete()


def webhook_secret_rotate(
    *, endpoint: WebhookEndpoint, actor: User | None, ip: str | None
) -> WebhookEndpoint:
    """A new signing secret; the old one stops verifying with the next delivery."""
    with transaction.atomic():
        endpoint.secret_encrypted = encrypt_secret(webhook_secret_generate())
        endpoint.save(update_fields=["secret_encrypted"])
        audit_record(
            action="webhook.rotate_secret",
            account=endpoint.account,
            actor=actor,
            target=endpoint,
            ip=ip,
        )
    return endpoint


def webhook_secret_reveal(*, endpoint: WebhookEndpoint, actor: User | None, ip: str | None) -> str:
    """The plain signing secret, for the person who asked (the reveal is audited)."""
    audit_record(
        action="webhook.reveal_secret",
        account=endpoint.account,
        actor=actor,
        target=endpoint,
        ip=ip,
    )
    return decrypt_secret(endpoint.secret_encrypted)


def webhook_send_test(
    *, endpoint: WebhookEndpoint, actor: User | None, ip: str | None
) -> WebhookDelivery:
    """A `webhook.test` event to this endpoint only (even when it is disabled: testing it
    before turning it on is the point)."""
    event_id = f"evt_test_{secrets.token_hex(12)}"
    with transaction.atomic():
        event = NotificationEvent(
            account=endpoint.account,
            event_type="webhook.test",
            event_id=event_id,
            title=_("Test event"),
            body=_("A test event sent from the console. Its signature verifies like any other."),
            link="/notifications/webhooks/",
            data={"endpoint_id": endpoint.pk},
            created_at=timezone.now(),
        )
        [delivery] = _deliveries_create(event=event, endpoints=[endpoint])
        audit_record(
            action="webhook.test",
            account=endpoint.account,
            actor=actor,
            target=endpoint,
            ip=ip,
            metadata={"event_id": event_id},
        )
        _on_commit_enqueue("deliver_webhook", delivery.pk)
    return delivery


# --- Webhook deliveries ---------------------------------------------------------------------


def webhook_payload(*, event: NotificationEvent) -> dict[str, Any]:
    """What an endpoint receives: never a secret."""
    return {
        "id": event.event_id,
        "type": event.event_type,
        "created": int(event.created_at.timestamp()),
        "account_id": event.account_id,
        "title": event.title,
        "body": event.body,
        "link": absolute_link(event.link) if event.link else "",
        "data": event.data,
    }


def _deliveries_create(
    *, event: NotificationEvent, endpoints: list[WebhookEndpoint]
) -> list[WebhookDelivery]:
    payload = webhook_payload(event=event)
    now = timezone.now()
    return WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                endpoint=endpoint,
                event_type=event.event_type,
                event_id=event.event_id,
                payload=payload,
                next_attempt_at=now,
            )
            for endpoint in endpoints
        ]
    )


def webhook_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>` (see docs/webhooks.md)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def webhook_retry_delay(attempts: int) -> timedelta:
    """Wait after the `attempts`-th failed attempt: base × 2^(attempts − 1)."""
    return timedelta(seconds=settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** (attempts - 1))


def _claim(delivery_id: int, now: datetime) -> WebhookDelivery | None:
    """Take a due delivery for one attempt, leasing it so nobody else sends it meanwhile."""
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("endpoint")
            .filter(
                pk=delivery_id,
                status=WebhookDelivery.Status.PENDING,
                next_attempt_at__lte=now + DUE_SLACK,
            )
            .first()
        )
        if delivery is None:
            return None
        delivery.attempts += 1
        delivery.last_attempt_at = now
        delivery.next_attempt_at = now + ATTEMPT_LEASE
        delivery.save(update_fields=["attempts", "last_attempt_at", "next_attempt_at"])
    return delivery


class AddressNotPublic(Exception):
    """The endpoint's host resolves to an address that is not public."""


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write ends at the attempt's deadline: the per-phase
    timeouts alone let an endpoint that trickles its answer hold an attempt for ever."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float):
        self._stream = stream
        self._deadline = deadline

    def _timeout(self, timeout: float | None, error: type[Exception]) -> float:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise error("the attempt's deadline passed")
        return remaining if timeout is None else min(timeout, remaining)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._timeout(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._timeout(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        stream = self._stream.start_tls(
            ssl_context, server_hostname, self._timeout(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(stream, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeliveryBackend(httpcore.SyncBackend):
    """Resolves the host once, refuses it unless every address is public (or private networks
    are allowed), and connects to an address it checked: a DNS answer that changes between
    the check and the connection cannot redirect the POST. TLS still verifies the host name."""

    def __init__(self, *, deadline: float, allow_private: bool):
        self._deadline = deadline
        self._allow_private = allow_private

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            resolved = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as error:
            raise httpcore.ConnectError("the host name did not resolve") from error
        addresses = list(dict.fromkeys(info[4][0] for info in resolved))
        if not self._allow_private and not all(address_is_public(a) for a in addresses):
            raise AddressNotPublic
        last_error: Exception = httpcore.ConnectError("no address")
        for address in addresses:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise httpcore.ConnectTimeout("the attempt's deadline passed")
            try:
                stream = super().connect_tcp(
                    address,
                    port,
                    timeout=remaining if timeout is None else min(timeout, remaining),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                last_error = error
                continue
            return _DeadlineStream(stream, self._deadline)
        raise last_error


@sensitive_variables("secret", "headers")
def _post(delivery: WebhookDelivery) -> tuple[int | None, str, int]:
    """One POST, within WEBHOOK_TIMEOUT_SECONDS of wall-clock time in all (resolving,
    connecting, sending and reading the status; the body is never read). Returns (status code
    or None, short error or "", milliseconds). Never raises: whatever goes wrong is a failed
    attempt, so the backoff and the attempt limit apply to it."""
    started = time.monotonic()
    timeout = settings.WEBHOOK_TIMEOUT_SECONDS
    try:
        body = json.dumps(delivery.payload, ensure_ascii=False, separators=(",", ":")).encode()
        secret = decrypt_secret(delivery.endpoint.secret_encrypted)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "BigModel-Console-Webhooks/1.0",
            "X-Console-Event": delivery.event_type,
            "X-Console-Delivery": str(delivery.pk),
            "X-Console-Signature": webhook_signature(
                secret=secret, timestamp=int(time.time()), body=body
            ),
        }
        url = httpx.URL(delivery.endpoint.url)
        backend = _DeliveryBackend(
            deadline=started + timeout,
            allow_private=settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS,
        )
        target = httpcore.URL(
            scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
        )
        with (
            httpcore.ConnectionPool(network_backend=backend, max_connections=1) as pool,
            pool.stream(
                "POST",
                target,
                headers=list(headers.items()),
                content=body,
                extensions={"timeout": dict.fromkeys(PHASES, timeout)},
            ) as response,
        ):
            status_code = response.status
    except AddressNotPublic:
        return None, _("refused: the address is not public"), _elapsed_ms(started)
    except httpcore.TimeoutException:
        return None, _("Timed out"), _elapsed_ms(started)
    except (httpcore.NetworkError, httpcore.ProtocolError) as error:
        # The class name only: messages can be long and carry nothing the owner can act on.
        return (
            None,
            _("Connection failed (%(kind)s)") % {"kind": type(error).__name__},
            _elapsed_ms(started),
        )
    except Exception as error:
        # Anything else (a host name that cannot be encoded, say) is a failed attempt too:
        # raised, it would leave the delivery pending and the sweep retrying it for ever.
        logger.warning("webhook_post delivery=%s failed: %s", delivery.pk, type(error).__name__)
        return (
            None,
            _("Could not send (%(kind)s)") % {"kind": type(error).__name__},
            _elapsed_ms(started),
        )
    if 200 <= status_code < 300:
        return status_code, "", _elapsed_ms(started)
    return status_code, _("HTTP %(code)s") % {"code": status_code}, _elapsed_ms(started)


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def webhook_deliver(*, delivery_id: int, now: datetime | None = None) -> WebhookDelivery | None:
    """Make one attempt at a due delivery and record it on the row: 2xx succeeds; anything
    else schedules the next attempt with exponential backoff, or fails the delivery after
    WEBHOOK_MAX_ATTEMPTS. Returns the delivery, or None when it was not due (already done,
    leased by another attempt, or waiting for its backoff)."""
    delivery = _claim(delivery_id, now or timezone.now())
    if delivery is None:
        return None
    claimed_attempts = delivery.attempts
    # A disabled endpoint gets nothing more (its pending deliveries fail), except a test.
    sendable = delivery.endpoint.enabled or delivery.event_type == "webhook.test"
    if sendable:
        status_code, error, elapsed_ms = _post(delivery)
    else:
        status_code, error, elapsed_ms = None, _("Endpoint disabled"), 0
    finished = timezone.now()
    fields: dict[str, Any] = {
        "last_status_code": status_code,
        "last_error": error[:200],
        "attempt_log": [
            *delivery.attempt_log,
            {
                "at": finished.isoformat(),
                "status_code": status_code,
                "error": error[:200],
                "ms": elapsed_ms,
            },
        ],
    }
    if not error:
        fields.update(
            status=WebhookDelivery.Status.SUCCEEDED, delivered_at=finished, next_attempt_at=None
        )
    elif claimed_attempts >= settings.WEBHOOK_MAX_ATTEMPTS or not sendable:
        fields.update(status=WebhookDelivery.Status.FAILED, next_attempt_at=None)
    else:
        fields.update(next_attempt_at=finished + webhook_retry_delay(claimed_attempts))
    # Only the attempt that holds the lease records (attempts still equals its claim).
    WebhookDelivery.objects.filter(pk=delivery.pk, attempts=claimed_attempts).update(**fields)
    for name, value in fields.items():
        setattr(delivery, name, value)
    logger.info(
        "webhook_deliver delivery=%s endpoint=%s attempt=%s status=%s code=%s",
        delivery.pk,
        delivery.endpoint_id,
        claimed_attempts,
        delivery.status,
        status_code,
    )
    return delivery


def deliveries_due(*, now: datetime | None = None) -> list[int]:
    """Pending deliveries whose next attempt is due: the sweep enqueues them (their task was
    lost with Redis, or a worker died holding the lease)."""
    now = now or timezone.now()
    return list(
        WebhookDelivery.objects.filter(
            status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
