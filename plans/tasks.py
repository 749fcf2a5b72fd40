"""The coding plan's Celery tasks: renewals."""

import logging

from celery import shared_task
from django.db import OperationalError

from plans.services import plans_renew_due

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def renew_plans() -> dict:
    """Renew (or end) every subscription whose paid period has ended. Idempotent: a renewed
    period moves on, so a repeated or overlapping run finds nothing more to do."""
    outcomes = plans_renew_due()
    logger.info("renew_plans %s", outcomes)
    return outcomes
