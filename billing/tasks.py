"""Billing's Celery tasks: each takes ids (or nothing), calls a service, logs what it did.
All are idempotent: a retry, a duplicate delivery or the sweep running beside them changes
nothing twice (payments settle under a row lock; statements are unique per month)."""

import logging

from celery import shared_task
from django.db import OperationalError

from billing import payments, services, statements

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def expire_packs() -> int:
    """Close resource packs past their expiry, recording what each forfeited."""
    closed = services.packs_expire()
    logger.info("expire_packs closed=%s", closed)
    return closed


class StillPending(Exception):
    """The provider has not decided yet: try again shortly."""


@shared_task(
    acks_late=True,
    autoretry_for=(OperationalError, StillPending),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=8,
)
def confirm_payment(payment_id: int) -> str:
    """Settle a pending card payment once the provider has decided. After the retries run
    out, the pending-payment sweep takes over."""
    payment = payments.payment_confirm_pending(payment_id=payment_id)
    if payment is None:
        logger.info("confirm_payment payment=%s missing", payment_id)
        return "missing"
    logger.info("confirm_payment payment=%s status=%s", payment_id, payment.status)
    if payment.is_pending:
        raise StillPending(payment.reference)
    return payment.status


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def sweep_pending_payments() -> dict:
    """Settle card payments whose confirmation was lost; cancel stale bank transfers."""
    result = payments.payments_sweep_pending()
    logger.info("sweep_pending_payments settled=%(settled)s expired=%(expired)s", result)
    return result


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def auto_recharge(account_id: int) -> str:
    payment = payments.auto_recharge_run(account_id=account_id)
    status = payment.status if payment else "skipped"
    logger.info("auto_recharge account=%s %s", account_id, status)
    return status


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def auto_recharge_sweep() -> int:
    """Auto-recharge accounts below their threshold whose trigger was lost."""
    ran = payments.auto_recharge_sweep()
    logger.info("auto_recharge_sweep ran=%s", ran)
    return ran


@shared_task(acks_late=True, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5)
def make_monthly_statements() -> int:
    """Store last month's statement of each account whose month has ended."""
    made = statements.statements_generate_due()
    logger.info("make_monthly_statements made=%s", made)
    return made
