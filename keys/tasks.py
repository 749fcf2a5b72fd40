import logging

from celery import shared_task
from django.db import OperationalError

from keys import services

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def flush_last_used() -> int:
    """Move API keys' buffered last-used times from Redis into the database."""
    updated = services.api_keys_flush_last_used()
    logger.info("flush_last_used updated=%s", updated)
    return updated
