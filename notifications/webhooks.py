"""Signed webhooks: an account's endpoints, the deliveries of its events to them, and the
attempts at each delivery.

A delivery is a row written in the caller's transaction; a task makes each attempt once it
commits, leasing the row so nobody else sends it meanwhile, and the sweep re-enqueues what the
database says is due (a lost task, a worker that died holding the lease). The POST itself goes
through notifications/safe_http.py, which refuses addresses that are not public."""

import hashlib
import hmac
import json
import logging
import secrets
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
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_variables

from console.models import Account, User
from console.secrets_at_rest import decrypt_secret, encrypt_secret
from console.services import ServiceError, audit_record

# tasks.py imports this module back: both import modules, not names, so either loads first.
from notifications import tasks
from notifications.models import NotificationEvent, WebhookDelivery, WebhookEndpoint
from notifications.safe_http import (
    AddressNotPublic,
    host_is_private_literal,
    is_ip_literal,
    post_status,
)

logger = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
URL_MAX_LENGTH = 500
# While an attempt runs, its delivery is leased for this long: far above an attempt's whole
# wall-clock deadline (WEBHOOK_TIMEOUT_SECONDS, see _post), so the sweep never claims and POSTs
# a delivery whose attempt is still running; a worker that died mid-attempt only delays it.
ATTEMPT_LEASE = timedelta(seconds=60)
# A Celery countdown may fire a little early against the database's idea of "due".
DUE_SLACK = timedelta(seconds=2)
SWEEP_BATCH = 500


# --- Endpoints ------------------------------------------------------------------------------


def webhook_secret_generate() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


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
        if not is_ip_literal(host):
            idna.encode(host)
    except Exception as error:  # httpx.InvalidURL, idna's errors: the sender would fail alike
        raise ServiceError(
            _("The host name of this URL is not valid: check it for stray characters.")
        ) from error
    if not settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS and host_is_private_literal(host):
        raise ServiceError(
            _(
                "Use a public address: loopback, private, link-local and reserved networks "
                "cannot receive webhooks."
            )
        )
    return url


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
        [delivery] = webhook_deliveries_create(event=event, endpoints=[endpoint])
        audit_record(
            action="webhook.test",
            account=endpoint.account,
            actor=actor,
            target=endpoint,
            ip=ip,
            metadata={"event_id": event_id},
        )
    return delivery


# --- Deliveries -----------------------------------------------------------------------------


def webhook_payload(*, event: NotificationEvent) -> dict[str, Any]:
    """What an endpoint receives: never a secret."""
    return {
        "id": event.event_id,
        "type": event.event_type,
        "created": int(event.created_at.timestamp()),
        "account_id": event.account_id,
        "title": event.title,
        "body": event.body,
        "link": event.absolute_link if event.link else "",
        "data": event.data,
    }


def webhook_deliveries_create(
    *, event: NotificationEvent, endpoints: list[WebhookEndpoint]
) -> list[WebhookDelivery]:
    """One pending delivery of `event` to each endpoint. Only writes rows (call it inside
    your transaction): each delivery's first attempt is enqueued on commit."""
    payload = webhook_payload(event=event)
    now = timezone.now()
    deliveries = WebhookDelivery.objects.bulk_create(
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
    for delivery in deliveries:
        _enqueue_on_commit(delivery.pk)
    return deliveries


def _enqueue_on_commit(delivery_id: int) -> None:
    def enqueue():
        # retry=False: with the broker down, fail at once instead of blocking the caller while
        # kombu retries the publish; the row is written and the sweep catches up.
        tasks.deliver_webhook.apply_async((delivery_id,), retry=False)

    # robust: a broker that is down must not fail the caller's commit; the sweep catches up.
    transaction.on_commit(enqueue, robust=True)


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
        status_code = post_status(
            delivery.endpoint.url,
            headers=headers,
            body=body,
            timeout=timeout,
            deadline=started + timeout,
            allow_private=settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS,
        )
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
