"""Delivering events to an account, and the in-app notifications.

`notify` is what the rest of the console calls (alerts, mostly). It only writes rows, so it
is safe inside the caller's transaction; emails (notifications/emails.py) and webhook POSTs
(notifications/webhooks.py) go out from Celery tasks enqueued on commit. The rows are the
queue of record: a lost task is picked up by the sweep.
"""

import logging

from django.utils import timezone

from console.models import Account, User
from notifications.emails import notification_email_enqueue
from notifications.models import Notification, NotificationEvent, WebhookEndpoint
from notifications.selectors import alert_recipients
from notifications.webhooks import webhook_deliveries_create

logger = logging.getLogger(__name__)


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
        notification_email_enqueue(event_pk=event.pk)
    deliveries = []
    if webhook:
        endpoints = list(WebhookEndpoint.objects.filter(account=account, enabled=True))
        deliveries = webhook_deliveries_create(event=event, endpoints=endpoints)
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


def notifications_mark_read(
    *, user: User, account: Account, notification: Notification | None = None
) -> int:
    """Mark one notification (or, with none given, all of them) of `user` in `account` read."""
    queryset = Notification.objects.filter(user=user, account=account, read_at__isnull=True)
    if notification is not None:
        queryset = queryset.filter(pk=notification.pk)
    return queryset.update(read_at=timezone.now())
