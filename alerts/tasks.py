"""Spend alerts' Celery tasks: one account after a settlement or recharge, and the sweep."""

import logging

from celery import shared_task
from django.db import OperationalError

# The module, not its functions: alerts.services schedules these tasks, so each of the two
# modules imports the other, and a name is looked up when a task runs, not at import.
from alerts import services
from console.models import Account

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def evaluate_alerts(account_id: int) -> int:
    """One account's spend alerts, after a settlement crossed a threshold or a recharge."""
    account = Account.objects.filter(pk=account_id).first()
    if account is None:
        return 0
    sent = len(services.alerts_evaluate(account=account))
    logger.info("evaluate_alerts account=%s sent=%s", account_id, sent)
    return sent


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def sweep_alerts() -> int:
    """Every account with usage today or an alert set: spikes, packs, and any crossing whose
    evaluation task was lost."""
    sent = services.alerts_sweep()
    logger.info("sweep_alerts sent=%s", sent)
    return sent


# The names these tasks had before issue 21 moved them out of billing. A task of the old name
# still queued when a deployment upgrades would otherwise be dropped by the new worker as
# unknown; kept for one release, then removed (docs/decisions.md, issue 21).
@shared_task(name="billing.tasks.evaluate_alerts", acks_late=True)
def evaluate_alerts_old_name(account_id: int) -> int:
    return evaluate_alerts(account_id)


@shared_task(name="billing.tasks.sweep_alerts", acks_late=True)
def sweep_alerts_old_name() -> int:
    return sweep_alerts()
