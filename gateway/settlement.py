"""Settlement: what a forwarded request cost, written once it is known.

The only place that writes across billing, usage and alerts, in the order it happens:

1. the prompt log (history), before any lock: it locks nothing another request waits for,
   so its (large) row goes in before the account's hot rows are locked, not while they are;
2. the price (billing), which refuses a charge that cannot be made;
3. the account's roll-up writers' lock (usage, shared among writers), then the reads that
   need no lock: a replay of the request id, the candidate packs (billing);
4. the account's wallet, then its packs, locked (billing) until the settlement commits;
5. the charge, computed by billing's money rules (`billing.charges.charge_compute`);
6. one round trip of writes (`billing.writes`, one prepared statement on PostgreSQL): the
   ledger entry, the packs drawn, the wallet, the month counters, the usage record carrying
   what the request cost and its roll-ups;
7. on commit: auto-recharge (billing) and alert evaluation (alerts), when the charge crossed
   a threshold.

Billing owns the money rules and its rows' writes; usage the record's and roll-ups' writes;
this module composes them. No transaction is open while the upstream answers.
"""

from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from alerts.services import PLAN_LEVELS as PLAN_ALERT_LEVELS
from alerts.services import schedule_evaluation, spend_crossed_a_level
from billing import writes
from billing.charges import Charge, balance_crossed, charge_compute
from billing.charging import (
    MonthSpend,
    charge_check,
    charge_counted,
    charge_replayed,
    charge_writes,
    pack_candidates,
    packs_lock,
)
from billing.services import auto_recharge_after_drop, wallet_lock
from console.models import Account
from gateway.services import Admitted, Outcome, best_effort, usage_source, with_short_database_wait
from history.services import prompt_log_write
from keys.services import api_key_mark_used
from usage.models import UsageRecord
from usage.rollups import rollups_lock, usage_record_write, usage_record_writes


@with_short_database_wait
def settle(
    *,
    admitted: Admitted,
    body: dict,
    outcome: Outcome,
    client_request_id: str,
    stream: bool,
    at=None,
) -> UsageRecord:
    """One short transaction: the prompt log, the charge, the usage record. Committed
    before the response completes (for streams, before the final [DONE]). `at` backdates
    (the demo's history only)."""
    auth = admitted.auth
    now = at or timezone.now()
    fields = {
        "account": auth.account,
        "project": auth.project,
        "api_key": auth.key,
        "source": usage_source(auth),
        "request_id": admitted.request_id,
        "client_request_id": client_request_id,
        "model": body["model"],
        "requested_model": admitted.requested_model,
        "endpoint": admitted.endpoint,
        "stream": stream,
        "status": outcome.status,
        "code": outcome.code,
        "input_tokens": outcome.input_tokens,
        "output_tokens": outcome.output_tokens,
        "estimated": outcome.estimated,
        "latency_ms": outcome.latency_ms,
        "first_token_ms": outcome.first_token_ms,
        "created_at": now,
    }
    counts = outcome.forwarded and (outcome.status == 200 or outcome.partial)
    with transaction.atomic():
        if outcome.forwarded:
            _prompt_log_write(admitted=admitted, body=body, outcome=outcome, at=now)
        if admitted.plan is not None:
            # The coding plan paid (issue 22): no charge, no lock on the wallet. The record
            # names the term and the prompts it counted, or nothing when it counts nothing
            # (an upstream failure: admission's hold is given back on release).
            fields["plan_term_id"] = admitted.plan.term_id
            fields["quota_milli"] = admitted.plan.amount if counts else 0
            record = usage_record_write(**fields)
            if counts and admitted.plan.crossed(PLAN_ALERT_LEVELS):
                schedule_evaluation(auth.account.pk)
        elif counts:
            record = UsageRecord(**fields)
            charge_usage(
                account=auth.account,
                project=auth.project,
                model=body["model"],
                input_tokens=outcome.input_tokens,
                output_tokens=outcome.output_tokens,
                request_id=admitted.request_id,
                at=now,
                record=record,
            )
        else:
            record = usage_record_write(**fields)  # costs nothing: no charge, no lock
    # Committed: the plan's hold is kept (the release gives back one that does not count).
    admitted.plan_counts = counts
    if auth.key is not None:
        # Committed: a last-used time Redis cannot take now must not turn the answer into
        # an error (the request is charged either way).
        best_effort(api_key_mark_used, key=auth.key, at=now)
    return record


def _prompt_log_write(*, admitted: Admitted, body: dict, outcome: Outcome, at: datetime) -> None:
    auth = admitted.auth
    prompt_log_write(
        account=auth.account,
        project=auth.project,
        api_key=auth.key,
        request_id=admitted.request_id,
        model=body["model"],
        messages=body["messages"],
        parameters={k: v for k, v in body.items() if k not in ("messages", "simulator")},
        response_text=outcome.response_text,
        status=outcome.status,
        input_tokens=outcome.input_tokens,
        output_tokens=outcome.output_tokens,
        latency_ms=outcome.latency_ms,
        first_token_ms=outcome.first_token_ms,
        created_at=at,
    )


def charge_usage(
    *,
    account: Account,
    model: str,
    input_tokens: int,
    output_tokens: int,
    request_id: str,
    project=None,
    at: datetime | None = None,
    record: UsageRecord | None = None,
) -> Charge:
    """Charge one request: packs first, then the fee split proportionally, arrears when short.

    With `record` (the gateway's usage record, unsaved), the record carries what the request
    cost, and it and its roll-ups are written in the charge's round trip, on every path
    (replays included): the roll-up rows are as hot as the wallet, since every request of a
    key and model adds to the same hour.

    Called inside the settlement's transaction, without a savepoint: an error here fails the
    settlement, which rolls back whole. Idempotent on `request_id`: a replay returns the
    original charge and changes nothing. Short on the account's hot rows: what needs no lock
    is read first, and the writes go in one round trip right before the caller commits.
    """
    at = at or timezone.now()
    # Refused before the transaction: a charge that cannot be made leaves the caller's usable.
    price = charge_check(
        account=account,
        model=model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        request_id=request_id,
        at=at,
    )
    with transaction.atomic(savepoint=False):
        if record is not None:
            rollups_lock(account.pk)
        replayed = charge_replayed(account=account, request_id=request_id)
        if replayed is not None:
            if record is not None:
                writes.run(_record_writes(record, replayed))
            return replayed
        # Free models cost nothing and consume no pack.
        wants_packs = not price.is_free and (input_tokens or output_tokens)
        candidates = pack_candidates(account=account, model=model, at=at) if wants_packs else []

        # --- from here on the account's rows are locked until the caller commits
        wallet = wallet_lock(account)
        charge = charge_compute(
            request_id=request_id,
            model=model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            price=price,
            packs=packs_lock(candidates, model=model, at=at),
            recharge_nano=wallet.recharge_nano,
            bonus_nano=wallet.bonus_nano,
        )
        batch = charge_writes(account=account, project=project, charge=charge, at=at)
        if record is not None:
            batch += _record_writes(record, charge)
        returned = writes.run(batch) if batch else {}
        if charge.changes_nothing:
            return charge  # a free request: no ledger entry, nothing to count
        spend = charge_counted(
            account=account, project=project, charge=charge, at=at, returned=returned
        )
        if spend is None:
            # A concurrent charge of this request id won the ledger entry's gate.
            if record is not None:
                # The record's writes went in beside a charge that did not: fail the
                # settlement (the usage record's own uniqueness fails it the same way).
                raise IntegrityError(f"request {request_id} was charged concurrently")
            return charge_replayed(account=account, request_id=request_id)

        # --- on commit: what the charge set off
        auto_recharge_after_drop(wallet, charge.spent_nano)
        if _alert_threshold_crossed(
            account=account, project=project, wallet=wallet, charge=charge, spend=spend
        ):
            schedule_evaluation(account.pk)
    return charge


def _record_writes(record: UsageRecord, charge: Charge) -> list[writes.Write]:
    """The usage record, carrying what the request cost, and its roll-ups."""
    record.pack_tokens = charge.pack_tokens
    record.input_price_nano = charge.input_price_nano
    record.output_price_nano = charge.output_price_nano
    record.fee_nano = charge.fee_nano
    record.recharge_nano = charge.recharge_nano
    record.bonus_nano = charge.bonus_nano
    record.arrears_nano = charge.arrears_nano
    return usage_record_writes(record=record, time_zone=record.account.time_zone)


def _alert_threshold_crossed(
    *, account, project, wallet, charge: Charge, spend: MonthSpend
) -> bool:
    """Whether the charge took the balance below the alert's threshold (mirrored on the
    wallet, locked before the charge), or month-to-date spend across 50, 80 or 100% of the
    account's budget or the project's cap: no extra query, the limits are on the rows
    already loaded."""
    before = wallet.recharge_nano + wallet.bonus_nano
    if balance_crossed(before=before, spent=charge.spent_nano, threshold=wallet.alert_below_nano):
        return True
    fee = charge.fee_nano
    if not fee:
        return False
    if account.monthly_budget_nano and spend_crossed_a_level(
        before=spend.account_nano - fee, after=spend.account_nano, limit=account.monthly_budget_nano
    ):
        return True
    return bool(
        project is not None
        and project.monthly_cap_nano
        and spend_crossed_a_level(
            before=spend.project_nano - fee,
            after=spend.project_nano,
            limit=project.monthly_cap_nano,
        )
    )
