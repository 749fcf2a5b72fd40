import logging

from celery import shared_task
from django.db import OperationalError

from billing import services

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def expire_packs() -> int:
    closed = services.packs_expire()
    logger.info("expire_packs closed=%s", closed)
    return closed
