"""Celery tasks of the console app: each takes ids (or nothing), calls a service, logs."""

import logging

from celery import shared_task
from django.db import OperationalError

from console import services

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
    from console.jobs import job_runs_purge

    deleted = job_runs_purge()
    logger.info("purge_old_job_runs deleted=%s", deleted)
    return deleted
