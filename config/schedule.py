"""Every periodic job of the console, in one place. Crontab only; each entry has a comment
and an `expires` (a run that could not start in time is dropped, not piled up: the next
run does the same work, because every task is idempotent).

Times are UTC (CELERY_TIMEZONE).
"""

from celery.schedules import crontab

BEAT_SCHEDULE = {
    # Delete invitations expired, accepted or revoked over 30 days ago (keeps the table small
    # and old tokens unusable). Daily, quietly after midnight.
    "purge-old-invitations": {
        "task": "console.tasks.purge_old_invitations",
        "schedule": crontab(minute=17, hour=3),
        "options": {"expires": 3600},
    },
    # Delete records of job runs older than 30 days (the staff job page shows the latest
    # runs; the table stays a few thousand rows). Daily, after the invitations purge.
    "purge-old-job-runs": {
        "task": "console.tasks.purge_old_job_runs",
        "schedule": crontab(minute=27, hour=3),
        "options": {"expires": 3600},
    },
    # Move API keys' buffered last-used times from Redis into the database; the key list may
    # lag by this minute. A no-op on the embedded default (the web process writes them).
    "flush-api-key-last-used": {
        "task": "keys.tasks.flush_last_used",
        "schedule": crontab(),
        "options": {"expires": 55},
    },
    # Close resource packs past their expiry, each with a ledger record of what was forfeited.
    # charge_usage already skips expired packs, so this only keeps balances and pages tidy.
    "expire-resource-packs": {
        "task": "billing.tasks.expire_packs",
        "schedule": crontab(minute="*/10"),
        "options": {"expires": 540},
    },
    # Prompt history retention by tier: delete rows older than each tier's window, in
    # batches. Nightly at a quiet hour for Asia/Shanghai (UTC 18:30 = 02:30 CST).
    "purge-expired-history": {
        "task": "history.tasks.purge_expired_history",
        "schedule": crontab(minute=30, hour=18),
        "options": {"expires": 6 * 3600},
    },
    # Settle card payments whose confirmation task was lost (Redis keeps nothing on disk)
    # and cancel bank transfers staff never confirmed: the database is the queue of record.
    "sweep-pending-payments": {
        "task": "billing.tasks.sweep_pending_payments",
        "schedule": crontab(),
        "options": {"expires": 55},
    },
    # Webhook deliveries whose next attempt is due and notification emails never sent: their
    # task was lost (Redis keeps nothing on disk) or its retries ran out before the backoff
    # did. The rows are the queue of record; a delivery is leased, so nothing goes twice.
    "sweep-notification-deliveries": {
        "task": "notifications.tasks.sweep_deliveries",
        "schedule": crontab(),
        "options": {"expires": 55},
    },
    # Outgoing emails whose next attempt is past due: their task was lost (a broker outage,
    # Redis keeping nothing on disk, a worker that died) or its retries ran out before the
    # backoff did; each is leased while it is sent, so nothing goes twice. Also deletes sent
    # emails older than 30 days.
    "sweep-outgoing-emails": {
        "task": "console.tasks.sweep_emails",
        "schedule": crontab(),
        "options": {"expires": 55},
    },
    # Prompt-history exports no worker has started (requested while the broker was down, or
    # lost with Redis): enqueued again, and failed with a message on their page once
    # HISTORY_EXPORT_START_MINUTES have passed, so none waits "preparing" for ever.
    "sweep-history-exports": {
        "task": "history.tasks.sweep_history_exports",
        "schedule": crontab(),
        "options": {"expires": 55},
    },
    # Auto-recharge for accounts below their threshold whose trigger was lost (the charge
    # that crossed it enqueues the recharge at once; this is the safety net).
    "auto-recharge-sweep": {
        "task": "billing.tasks.auto_recharge_sweep",
        "schedule": crontab(minute="*/5"),
        "options": {"expires": 280},
    },
    # Monthly statements: hourly, so each account's 1st (in its own time zone) is reached
    # within the hour; a month is stored once.
    "monthly-statements": {
        "task": "billing.tasks.make_monthly_statements",
        "schedule": crontab(minute=7),
        "options": {"expires": 3000},
    },
    # Spend alerts: every account with usage today or an alert set. Crossings of the balance
    # threshold, caps and budgets are evaluated at once, after the settlement that crossed;
    # this catches spikes, packs running low or expiring, and any evaluation that was lost.
    "sweep-spend-alerts": {
        "task": "alerts.tasks.sweep_alerts",
        "schedule": crontab(minute="*/5"),
        "options": {"expires": 280},
    },
    # Coding plans whose paid period has ended: renewed from the balance at the price locked
    # in, or ended (auto-renew off, or the balance could not pay) at the period's end.
    "renew-coding-plans": {
        "task": "plans.tasks.renew_plans",
        "schedule": crontab(minute="*/5"),
        "options": {"expires": 280},
    },
    # Usage roll-ups against the usage records of the last two days; an account that differs
    # is rebuilt. Roll-ups are written in each record's own transaction, so this is a safety
    # net that should find nothing. Nightly, after the history purge.
    "reconcile-usage-rollups": {
        "task": "usage.tasks.reconcile_rollups",
        "schedule": crontab(minute=45, hour=19),
        "options": {"expires": 3 * 3600},
    },
}
