"""The email of an event: one to each member who may manage alerts, queued in the console's
outbox (console/emails.py), which sends and retries them.

`notify` only marks the event as wanting an email; a task queues it once the caller's
transaction commits, and the sweep queues what a lost task left behind."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from console.emails import email_queue
from console.models import User

# tasks.py imports this module back: both import modules, not names, so either loads first.
from notifications import tasks
from notifications.models import NotificationEmail, NotificationEvent
from notifications.selectors import alert_recipients

# An email whose task has not run after this long is sent by the sweep.
EMAIL_SWEEP_AFTER = timedelta(minutes=2)
SWEEP_BATCH = 500


def notification_email_enqueue(*, event_pk: int) -> None:
    """Have the event's email queued once the current transaction commits."""

    def enqueue():
        # retry=False: with the broker down, fail at once instead of blocking the caller while
        # kombu retries the publish; the row is written and the sweep catches up.
        tasks.send_event_email.apply_async((event_pk,), retry=False)

    # robust: a broker that is down must not fail the caller's commit; the sweep catches up.
    transaction.on_commit(enqueue, robust=True)


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
                {"event": event, "user": user, "link": event.absolute_link},
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
