"""Usage's Celery tasks: roll-ups rebuilt after a time zone change and reconciled daily."""

import logging
from datetime import timedelta

from celery import shared_task
from django.db import OperationalError
from django.utils import timezone

from console.models import Account
from usage.rollups import rollups_rebuild, rollups_reconcile

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def rebuild_rollups(account_id: int) -> str:
    """An account's daily roll-ups from its records, after its time zone changed (days move;
    hours are UTC and stay)."""

    account = Account.objects.filter(pk=account_id).first()
    if account is None:
        return "gone"
    hourly, daily = rollups_rebuild(account=account, hourly=False)
    logger.info("rebuild_rollups account=%s hourly=%s daily=%s", account_id, hourly, daily)
    return f"{hourly} hourly, {daily} daily"


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def reconcile_rollups() -> list[int]:
    """Roll-ups of the last two days against the records; rebuild any account that differs
    (roll-ups are written in the records' own transaction, so this should find nothing)."""

    repaired = rollups_reconcile(since=timezone.now() - timedelta(days=2))
    logger.info("reconcile_rollups repaired=%s", repaired)
    return repaired


# The names these tasks had before issue 21 moved them out of billing. A task of the old name
# still queued when a deployment upgrades would otherwise be dropped by the new worker as
# unknown; kept for one release, then removed (docs/decisions.md, issue 21).
@shared_task(name="billing.tasks.rebuild_rollups", acks_late=True)
def rebuild_rollups_old_name(account_id: int) -> str:
    return rebuild_rollups(account_id)


@shared_task(name="billing.tasks.reconcile_rollups", acks_late=True)
def reconcile_rollups_old_name() -> list[int]:
    return reconcile_rollups()
