"""Notification tasks: each takes an id (or nothing), calls a service, logs what it did.

All are idempotent: the email is claimed on its event row, a webhook attempt on its delivery
row (a lease), so a duplicate task, a broker redelivery or the sweep sends nothing twice."""

import logging

from celery import shared_task
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone

from notifications import emails as event_emails
from notifications import webhooks as webhook_deliveries
from notifications.models import WebhookDelivery

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def send_event_email(event_pk: int) -> int:
    """Queue the event's emails in the outbox (console.emails), which sends and retries."""
    queued = event_emails.notification_email_send(event_pk=event_pk)
    logger.info("send_event_email event=%s queued=%s", event_pk, queued)
    return queued


@shared_task(
    bind=True,
    acks_late=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=settings.WEBHOOK_MAX_ATTEMPTS,
)
def deliver_webhook(self, delivery_id: int) -> str:
    """One attempt; on failure the task retries itself when the backoff is due. The retry
    count is bounded; should the retries (or the task) be lost, the sweep re-enqueues the
    delivery from its row's next_attempt_at."""
    delivery = webhook_deliveries.webhook_deliver(delivery_id=delivery_id)
    if delivery is None:
        logger.info("deliver_webhook delivery=%s not due", delivery_id)
        return "not due"
    if delivery.status == WebhookDelivery.Status.PENDING and self.request.retries < (
        self.max_retries
    ):
        countdown = max(0.0, (delivery.next_attempt_at - timezone.now()).total_seconds())
        raise self.retry(countdown=countdown)
    return delivery.status


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def sweep_deliveries() -> dict:
    """Re-enqueue what the database says is due: webhook deliveries past their next attempt
    and emails whose task never ran (Redis keeps nothing on disk)."""
    webhooks = webhook_deliveries.deliveries_due()
    for delivery_id in webhooks:
        deliver_webhook.delay(delivery_id)
    emails = event_emails.emails_unsent()
    for event_pk in emails:
        send_event_email.delay(event_pk)
    result = {"webhooks": len(webhooks), "emails": len(emails)}
    logger.info("sweep_deliveries webhooks=%(webhooks)s emails=%(emails)s", result)
    return result
