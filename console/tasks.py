"""Celery tasks of the console app: each takes ids (or nothing), calls a service, logs."""

import logging

from celery import shared_task
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone

from console import emails, services
from console.models import OutgoingEmail

logger = logging.getLogger(__name__)


@shared_task(
    acks_late=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
)
def purge_old_invitations() -> int:
    """Delete invitations expired, accepted or revoked over 30 days ago."""
    deleted = services.invitations_purge_expired()
    logger.info("purge_old_invitations deleted=%s", deleted)
    return deleted


@shared_task(
    acks_late=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
)
def purge_old_job_runs() -> int:
    """Delete records of job runs older than 30 days (the staff job page's history)."""
    deleted = services.job_runs_purge()
    logger.info("purge_old_job_runs deleted=%s", deleted)
    return deleted


@shared_task(
    bind=True,
    acks_late=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=settings.EMAIL_MAX_ATTEMPTS,
)
def send_email(self, email_id: int) -> str:
    """One attempt at an outgoing email; on failure the task retries itself when the
    backoff is due. Should the retries (or the task) be lost, the sweep re-enqueues the
    email from its row's next_attempt_at."""
    email = emails.email_deliver(email_id=email_id)
    if email is None:
        logger.info("send_email email=%s not due", email_id)
        return "not due"
    if email.status == OutgoingEmail.Status.PENDING and self.request.retries < self.max_retries:
        countdown = max(0.0, (email.next_attempt_at - timezone.now()).total_seconds())
        raise self.retry(countdown=countdown)
    return email.status


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def sweep_emails() -> dict:
    """Re-enqueue the emails the database says are due (their task was lost) and delete
    sent ones past their keeping time."""
    due = emails.emails_due()
    for email_id in due:
        send_email.delay(email_id)
    purged = emails.emails_purge_sent()
    result = {"due": len(due), "purged": purged}
    logger.info("sweep_emails due=%(due)s purged=%(purged)s", result)
    return result
