import logging

from celery import shared_task
from django.db import OperationalError

from history import services

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def purge_expired_history() -> int:
    """Delete prompt history older than each tier's retention, in batches."""
    deleted = services.history_purge_expired()
    logger.info("purge_expired_history deleted=%s", deleted)
    return deleted


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=3)
def build_history_export(export_id: int) -> None:
    services.history_export_build(export_id=export_id)
    logger.info("build_history_export export=%s done", export_id)


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def sweep_history_exports() -> dict:
    """Exports no worker started: enqueued again, or failed with a message after the bound."""
    result = services.history_exports_sweep()
    logger.info("sweep_history_exports requeued=%(requeued)s failed=%(failed)s", result)
    return result
