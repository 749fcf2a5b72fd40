"""Spend alerts' Celery tasks: one account after a settlement or recharge, and the sweep."""

import logging

from celery import shared_task
from django.db import OperationalError

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def evaluate_alerts(account_id: int) -> int:
    """One account's spend alerts, after a settlement crossed a threshold or a recharge."""
    from alerts.services import alerts_evaluate
    from console.models import Account

    account = Account.objects.filter(pk=account_id).first()
    if account is None:
        return 0
    sent = len(alerts_evaluate(account=account))
    logger.info("evaluate_alerts account=%s sent=%s", account_id, sent)
    return sent


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def sweep_alerts() -> int:
    """Every account with usage today or an alert set: spikes, packs, and any crossing whose
    evaluation task was lost."""
    from alerts.services import alerts_sweep

    sent = alerts_sweep()
    logger.info("sweep_alerts sent=%s", sent)
    return sent
