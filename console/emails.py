"""The outbox every email of the console goes through.

`email_queue` is the one service function that sends mail: it writes an OutgoingEmail row in
the caller's transaction and enqueues its task on commit. The task makes one attempt (a lease
on the row, so a duplicate task or the sweep never sends it alongside), and a failed attempt
is retried with exponential backoff up to EMAIL_MAX_ATTEMPTS, after which the row is failed
and stays visible to staff. A broker that is down or a worker that dies loses nothing: the
sweep (config/schedule.py) re-enqueues what the rows say is due.

Bodies can hold one-time links (email verification, password reset, invitations): they are
encrypted at rest, erased once the email is sent or given up on, and never logged
(docs/security.md). An API key is never put in an email.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import F
from django.utils import timezone

# tasks.py imports this module back: both import modules, not names, so either loads first.
from console import tasks
from console.log_masking import API_KEY
from console.models import OutgoingEmail
from console.secrets_at_rest import decrypt, encrypt

logger = logging.getLogger(__name__)

# While an attempt runs, its row is leased for this long: far above the SMTP timeout (10 s,
# config/settings.py), so the sweep never sends an email whose attempt is still running; a
# worker that died mid-attempt only delays it.
ATTEMPT_LEASE = timedelta(seconds=120)
# A Celery countdown may fire a little early against the database's idea of "due".
DUE_SLACK = timedelta(seconds=2)
# The sweep leaves a due email this long to its own task (enqueued on commit, or the task's
# retry) before it enqueues the email itself.
SWEEP_GRACE = timedelta(seconds=60)
SWEEP_BATCH = 500
# Sent emails are kept this long for staff (subject, recipient, when), then deleted.
KEEP_SENT = timedelta(days=30)


# The key management of upstream secrets (UPSTREAM_SECRET_KEY), with a key of its own
# derived from it, so an email body never decrypts as an upstream secret or vice versa.
def _key_material() -> str:
    return "console.outgoing-email:" + settings.UPSTREAM_SECRET_KEY


def _encrypt(text: str) -> str:
    return encrypt(text, key_material=_key_material())


def _decrypt(token: str) -> str:
    return decrypt(token, key_material=_key_material())


def email_queue(
    *, kind: str, to: str, subject: str, body: str, html_body: str = ""
) -> OutgoingEmail:
    """Send an email to `to` after the caller's transaction commits, retried until it is
    delivered or EMAIL_MAX_ATTEMPTS is reached. Safe inside any transaction: a rollback
    sends nothing, and a broker that is down never fails the caller (the sweep sends it)."""
    subject = " ".join(str(subject).split())  # one line: headers cannot hold a newline
    if any(API_KEY.search(text) for text in (subject, body, html_body)):
        # A programming error, never a person's: an API key is shown once, on screen only.
        raise ValueError("an email must never contain an API key")
    email = OutgoingEmail.objects.create(
        kind=kind,
        recipient=to,
        subject=subject[:300],
        body_encrypted=_encrypt(body),
        html_body_encrypted=_encrypt(html_body),
        next_attempt_at=timezone.now(),
    )

    def enqueue():
        # retry=False: with the broker down, fail at once instead of blocking the caller
        # while kombu retries the publish; the row is written and the sweep sends it.
        tasks.send_email.apply_async((email.pk,), retry=False)

    # robust: a broker that is down must not fail the caller's commit.
    transaction.on_commit(enqueue, robust=True)
    logger.info("email_queue email=%s kind=%s", email.pk, kind)
    return email


def email_retry_delay(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt: base × 2^(attempts − 1)."""
    return timedelta(seconds=settings.EMAIL_RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))


def _claim(email_id: int, now: datetime) -> OutgoingEmail | None:
    """Lease a due email for one attempt; the update's row count says who won."""
    claimed = OutgoingEmail.objects.filter(
        pk=email_id,
        status=OutgoingEmail.Status.PENDING,
        next_attempt_at__lte=now + DUE_SLACK,
    ).update(
        attempts=F("attempts") + 1,
        next_attempt_at=now + ATTEMPT_LEASE,
        last_attempt_at=now,
    )
    if not claimed:
        return None
    return OutgoingEmail.objects.get(pk=email_id)


def email_deliver(*, email_id: int, now: datetime | None = None) -> OutgoingEmail | None:
    """Make one attempt at a due email and record it on the row: delivered, or the next
    attempt scheduled with backoff, or failed after EMAIL_MAX_ATTEMPTS. Returns the email, or
    None when it was not due (sent, failed, leased by another attempt, or backing off)."""
    started = now or timezone.now()
    email = _claim(email_id, started)
    if email is None:
        return None
    claimed_attempts = email.attempts
    try:
        # Inside the attempt: a body that no longer decrypts (the key was changed) fails
        # like a mail server would, until EMAIL_MAX_ATTEMPTS, instead of being claimed for ever.
        message = EmailMultiAlternatives(
            subject=email.subject,
            body=_decrypt(email.body_encrypted),
            from_email=None,
            to=[email.recipient],
        )
        if email.html_body_encrypted:
            message.attach_alternative(_decrypt(email.html_body_encrypted), "text/html")
        message.send()
    except Exception as error:  # any failure of the mail server or the backend is an attempt
        error_name = type(error).__name__[:200]
    else:
        error_name = ""
    finished = timezone.now()
    fields: dict = {"last_error": error_name}
    if not error_name:
        fields.update(status=OutgoingEmail.Status.SENT, sent_at=finished, next_attempt_at=None)
    elif claimed_attempts >= settings.EMAIL_MAX_ATTEMPTS:
        fields.update(status=OutgoingEmail.Status.FAILED, next_attempt_at=None)
    else:
        # From the attempt's start: its lease (ATTEMPT_LEASE) is far longer than a send.
        fields["next_attempt_at"] = started + email_retry_delay(claimed_attempts)
    if fields.get("status"):
        # Done either way: the one-time links in the body are of no further use to anyone.
        fields.update(body_encrypted="", html_body_encrypted="")
    # Only the attempt that holds the lease records (attempts still equals its claim).
    OutgoingEmail.objects.filter(pk=email.pk, attempts=claimed_attempts).update(**fields)
    for name, value in fields.items():
        setattr(email, name, value)
    log = logger.warning if error_name else logger.info
    # The id, kind and outcome only: never the body (one-time links) nor the address.
    log(
        "email_deliver email=%s kind=%s attempt=%s status=%s error=%s",
        email.pk,
        email.kind,
        claimed_attempts,
        email.status,
        error_name or "-",
    )
    return email


def emails_due(*, now: datetime | None = None) -> list[int]:
    """Pending emails whose next attempt is past due: their task was lost (a broker outage,
    Redis keeping nothing on disk, a worker that died holding the lease)."""
    now = now or timezone.now()
    return list(
        OutgoingEmail.objects.filter(
            status=OutgoingEmail.Status.PENDING, next_attempt_at__lte=now - SWEEP_GRACE
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )


def emails_purge_sent(*, now: datetime | None = None) -> int:
    """Delete sent emails older than KEEP_SENT (failed ones stay for staff)."""
    now = now or timezone.now()
    deleted, _ = OutgoingEmail.objects.filter(
        status=OutgoingEmail.Status.SENT, created_at__lt=now - KEEP_SENT
    ).delete()
    return deleted
