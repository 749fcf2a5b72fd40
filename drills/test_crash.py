"""Crash drills (issue 12): processes killed with SIGKILL while they work.

(a) A web worker of `uvicorn --workers 2` is killed while 1,000 gateway requests (streams
    and plain answers, eight keys of four accounts, sixteen at a time) are in flight.
(b) A Celery pool child is killed while it confirms a card payment: once before the
    payment's transaction commits (held on the payment's row lock), once after it committed
    but before the message was acknowledged.
(c) The Celery worker's main process is killed with both kinds of confirmation in flight;
    with a short broker visibility timeout a new worker gets both messages again.

What must hold afterwards is in each drill's docstring; docs/drills.md has the figures.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter, defaultdict
from datetime import date

import psycopg
from psycopg import sql

from drills.conftest import (
    Load,
    Result,
    alive,
    drill_accounts,
    mixed_plan,
    outcome_counts,
    wait_until,
)
from drills.worker_app import pause_file_name

REQUESTS = 1_000
CONCURRENCY = 16
# The site's reservation and slot TTL in the web drill: what a killed worker held must come
# back within it, even while the same accounts keep sending.
RESERVATION_TTL = 20
CONFIRM = "billing.tasks.confirm_payment"
PENDING_CARD = "4000000000003220"  # the sandbox's card that stays pending, then succeeds


def _settle_orphans(timeout: float = 30) -> None:
    """Wait until no session of a killed process still holds a transaction open: PostgreSQL
    rolls each back when it sees its client gone."""
    from django.db import connection

    def quiet():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%%'"
            )
            return cursor.fetchone()[0] == 0

    wait_until(quiet, timeout=timeout, what="orphaned transactions to end")


def _gateway_state(accounts) -> dict[str, int]:
    """Concurrency slots and money reserved, summed over the drill's accounts and projects."""
    from console.shared_state import concurrency_key, reservation_keys, shared_state

    state = shared_state()
    keys = [
        reservation_keys(account_id=account.id, project_id=key.project_id)
        for account in accounts
        for key in account.keys
    ]
    return {
        "slots": sum(state.slot_count(concurrency_key(account.id)) for account in accounts),
        "reserved_account_nano": sum(state.held(key) for key in {pair[0] for pair in keys}),
        "reserved_project_nano": sum(state.held(key) for key in {pair[1] for pair in keys}),
    }


def _check_records(results: list[Result], accounts) -> dict[str, int]:
    """Each request: exactly one usage record and one charge if the client saw it succeed;
    at most one of each (and both or neither) otherwise; the wallets moved by the charges."""
    from billing.models import LedgerEntry, Wallet
    from billing.reconciliation import audit_all
    from history.models import PromptLog
    from usage.models import UsageRecord

    ids = [account.id for account in accounts]
    records = defaultdict(list)
    for record in UsageRecord.objects.filter(account_id__in=ids):
        records[record.client_request_id].append(record)
    charges = defaultdict(list)
    for entry in LedgerEntry.objects.filter(account_id__in=ids, kind=LedgerEntry.Kind.CHARGE):
        charges[entry.request_id].append(entry)
    logs = Counter(
        PromptLog.objects.filter(account_id__in=ids).values_list("request_id", flat=True)
    )

    figures = Counter()
    for result in results:
        mine = records.get(result.planned.client_request_id, [])
        label = f"request {result.planned.client_request_id} ({result.outcome}, {result.detail})"
        assert len(mine) <= 1, f"{label}: {len(mine)} usage records"
        record = mine[0] if mine else None
        if record is not None and result.request_id:
            assert record.request_id == result.request_id, f"{label}: another request's record"
        charged = charges.get(record.request_id, []) if record else []
        assert len(charged) <= 1, f"{label}: charged {len(charged)} times"
        if result.outcome == "ok":
            assert record is not None and record.status == 200, f"{label}: no usage record"
            assert len(charged) == 1, f"{label}: no charge"
            assert charged[0].fee_nano == record.fee_nano > 0, f"{label}: fee differs"
            assert logs[record.request_id] == 1, f"{label}: prompt log missing"
            figures["ok with one record and one charge"] += 1
        elif record is None:
            figures["cut off before settlement (no record, no charge)"] += 1
        elif record.status != 200:
            assert not charged, f"{label}: a refusal charged"
            figures["cut off after a refusal was recorded (no charge)"] += 1
        else:
            # Cut off after its settlement committed (the client never saw the end): billed once.
            assert record.status == 200 and len(charged) == 1, f"{label}: record without charge"
            figures["cut off after settlement (one record, one charge)"] += 1

    sent = {result.planned.client_request_id for result in results}
    for client_request_id, mine in records.items():
        assert client_request_id in sent, f"a usage record no drill request made: {mine}"
    recorded_ids = {record.request_id for mine in records.values() for record in mine}
    for request_id, entries in charges.items():
        assert request_id in recorded_ids, f"a charge without a usage record: {entries}"

    for account in accounts:
        wallet = Wallet.objects.get(account_id=account.id)
        moved = account.funded_nano - (
            wallet.recharge_nano + wallet.bonus_nano - wallet.arrears_nano
        )
        fees = sum(
            entry.fee_nano
            for entries in charges.values()
            for entry in entries
            if entry.account_id == account.id
        )
        recorded = sum(
            record.fee_nano
            for mine in records.values()
            for record in mine
            if record.account_id == account.id
        )
        assert moved == fees == recorded, (
            f"account {account.id}: wallet moved {moved}, charges {fees}, records {recorded}"
        )

    _accounts, problems = audit_all()
    assert not problems, "billing_audit: " + "; ".join(map(str, problems))
    return dict(figures)


def test_a_web_worker_killed_mid_flight_bills_each_request_once_and_frees_its_slots(
    start_site, start_worker, report
):
    """1,000 requests while one of the two web workers is killed with SIGKILL.

    Afterwards: the supervisor has replaced the worker; `billing_audit` is clean; every
    request the client saw succeed has exactly one usage record, one charge and one prompt
    log; a request cut off has either none or one of each (never two, never a charge
    without its record); each wallet moved by exactly the sum of its charges; and the
    concurrency slots and reservations the dead worker held are back to zero within the
    reservation TTL although the same accounts keep sending requests."""
    accounts = drill_accounts(4, keys_per_account=2)
    keys = [key for account in accounts for key in account.keys]
    site = start_site(workers=2, GATEWAY_RESERVATION_TTL=RESERVATION_TTL)
    start_worker()  # what settlement enqueues (alerts) has a worker, as in production

    load = Load(site.base, mixed_plan(keys, REQUESTS, tag="web"), concurrency=CONCURRENCY)
    load.start()
    load.wait_for(REQUESTS // 2)
    in_flight = load.in_flight
    victim, connections = site.busiest_worker()
    site.kill_worker(victim)
    killed = time.monotonic()
    replacements = site.wait_for_workers(excluding=[victim], timeout=60)
    replaced_in = time.monotonic() - killed
    results = load.join(timeout=300)
    assert victim not in replacements and not alive(victim)
    counts = outcome_counts(results)
    assert counts.get("refused", 0) == 0 and counts.get("wrong", 0) == 0, counts
    assert counts.get("broken", 0) >= 1, "the kill cut off no request: nothing was drilled"
    _settle_orphans()
    leaked = _gateway_state(accounts)

    # The same accounts keep sending for longer than the TTL: what the dead worker held
    # must expire anyway (a counter whose TTL every request refreshes would never expire).
    trickle = Load(
        site.base,
        mixed_plan(keys, 10_000, tag="trickle"),
        concurrency=2,
        stop_after=RESERVATION_TTL + 3,
    )
    trickle.start()
    trickled = trickle.join(timeout=120)
    assert outcome_counts(trickled) == {"ok": len(trickled)}, outcome_counts(trickled)
    after = _gateway_state(accounts)
    assert after == {"slots": 0, "reserved_account_nano": 0, "reserved_project_nano": 0}, (
        f"after {RESERVATION_TTL + 3}s more traffic (the TTL is {RESERVATION_TTL}s) the "
        f"gateway still holds {after} (right after the load: {leaked})"
    )
    figures = _check_records(results + trickled, accounts)

    cut_before = sum(1 for r in results if r.outcome == "broken" and r.status is None)
    report(
        f"{len(results)} requests in {load.seconds:.1f}s at concurrency {CONCURRENCY} "
        f"({sum(r.planned.stream for r in results)} streams); after {REQUESTS // 2} answers, "
        f"with {in_flight} requests in flight, killed the web worker holding {connections} of "
        f"the {CONCURRENCY} connections; replaced in {replaced_in:.1f}s; "
        f"outcomes {counts} ({cut_before} cut off before any header); {figures}; "
        f"held right after the load {leaked}, after {RESERVATION_TTL + 3}s of further traffic "
        f"({len(trickled)} requests) {after}; billing_audit clean"
    )


# --- Celery ----------------------------------------------------------------------------------


def _pending_card_payment(account_id: int, amount_units: int = 1_000):
    """A card payment the sandbox leaves pending: its confirmation task is enqueued on commit
    (with a countdown of SANDBOX_PENDING_SECONDS + 1), as the billing page would. ¥1,000
    earns the seeded promotion's bonus: its credit is two ledger entries."""
    from billing.models import PaymentMethod
    from billing.payments import payment_method_add, payment_start_card
    from console.models import Account
    from console.money import NANO_PER_UNIT

    account = Account.objects.get(pk=account_id)
    card = PaymentMethod.objects.filter(account=account, removed_at__isnull=True).first()
    if card is None:
        card = payment_method_add(
            account=account,
            number=PENDING_CARD,
            exp_month=12,
            exp_year=date.today().year + 2,
            cvc="123",
            actor=None,
        )
    payment = payment_start_card(
        account=account, amount_nano=amount_units * NANO_PER_UNIT, payment_method=card, actor=None
    )
    assert payment.is_pending and payment.bonus_nano > 0, (payment.status, payment.bonus_nano)
    return payment


def _lock_row(database_url: str, payment_id: int) -> psycopg.Connection:
    """Hold the payment's row lock in an open transaction: its confirmation, once running,
    waits inside its own transaction (mid-flight, nothing committed) until this lets go."""
    from billing.models import Payment

    holder = psycopg.connect(database_url)
    holder.execute(
        sql.SQL("SELECT id FROM {} WHERE id = %s FOR UPDATE").format(
            sql.Identifier(Payment._meta.db_table)
        ),
        [payment_id],
    )
    return holder


def _lock_waiters() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE NOT l.granted AND a.datname = current_database()"
        )
        return cursor.fetchone()[0]


def _credits(payment) -> tuple[str, int, int]:
    """(status, recharge entries, bonus entries) of a payment, from the database."""
    from billing.models import LedgerEntry, Payment

    payment = Payment.objects.get(pk=payment.pk)
    entries = LedgerEntry.objects.filter(account_id=payment.account_id, reference=payment.reference)
    return (
        payment.status,
        entries.filter(kind=LedgerEntry.Kind.RECHARGE).count(),
        entries.filter(kind=LedgerEntry.Kind.BONUS_GRANT).count(),
    )


def _assert_wallet_holds(account_id: int, payments) -> None:
    from billing.models import Payment, Wallet
    from billing.reconciliation import audit_all

    payments = [Payment.objects.get(pk=p.pk) for p in payments]
    wallet = Wallet.objects.get(account_id=account_id)
    assert wallet.recharge_nano == sum(p.amount_nano for p in payments), (
        "recharge credited twice or not at all"
    )
    assert wallet.bonus_nano == sum(p.bonus_nano for p in payments), (
        "bonus credited twice or not at all"
    )
    _accounts, problems = audit_all()
    assert not problems, "billing_audit: " + "; ".join(map(str, problems))


def test_b_a_pool_child_killed_mid_task_runs_the_task_again_with_one_effect(
    start_worker, worker_control, drill_database, report
):
    """A Celery pool child is killed with SIGKILL while it confirms a pending card payment.

    First before the confirmation's transaction commits: the message is requeued at once
    (acks_late + task_reject_on_worker_lost; the visibility timeout is the default half
    hour, so a quick second run can only come from the requeue), the task runs again in
    another child and credits the payment once. Then after the credit committed but before
    the message was acknowledged: the task runs again and credits nothing more."""
    started = time.monotonic()
    worker = start_worker()
    (account,) = drill_accounts(1, keys_per_account=1, recharge_units=0, bonus_units=0)

    # 1. Killed before its transaction commits.
    before = _pending_card_payment(account.id)
    holder = _lock_row(drill_database.url, before.pk)
    try:
        (first,) = worker.journal.wait_for(
            event="start", name=CONFIRM, args=[before.pk], timeout=60
        )
        wait_until(lambda: _lock_waiters() >= 1, timeout=30, what="the task to wait on the row")
        assert first["pid"] in worker.pool_pids()
        os.kill(first["pid"], signal.SIGKILL)
        runs = worker.journal.wait_for(event="start", task_id=first["task_id"], count=2, timeout=60)
        assert runs[1]["pid"] != first["pid"] and runs[1]["redelivered"]
        assert _credits(before)[0] == "pending", "a killed transaction left an effect"
    finally:
        holder.rollback()
        holder.close()
    worker.journal.wait_for(event="end", task_id=first["task_id"], state="SUCCESS", timeout=60)
    assert _credits(before) == ("succeeded", 1, 1)

    # 2. Killed after its effect committed, before the acknowledgement.
    after = _pending_card_payment(account.id)
    pause = worker_control / pause_file_name(CONFIRM, [after.pk])
    pause.touch()
    (paused,) = worker.journal.wait_for(event="paused", args=[after.pk], timeout=60)
    assert _credits(after)[:2] == ("succeeded", 1), "the pause came before the credit"
    os.kill(paused["pid"], signal.SIGKILL)
    pause.unlink()
    runs = worker.journal.wait_for(event="start", task_id=paused["task_id"], count=2, timeout=60)
    assert runs[1]["pid"] != paused["pid"] and runs[1]["redelivered"]
    ends = worker.journal.wait_for(event="end", task_id=paused["task_id"], count=2, timeout=60)
    assert ends[1]["state"] == "SUCCESS"
    assert _credits(after) == ("succeeded", 1, 1)
    _assert_wallet_holds(account.id, [before, after])
    report(
        f"2 pool children killed (one mid-transaction, one after commit before ack); each task "
        f"ran again in another child at once; 2 payments credited exactly once (one recharge "
        f"and one bonus entry each); billing_audit clean; {time.monotonic() - started:.1f}s"
    )


VISIBILITY_TIMEOUT = 8


def test_c_the_worker_main_process_killed_mid_task_gets_its_tasks_again_with_one_effect(
    start_worker, worker_control, drill_database, drill_redis, report
):
    """The worker's main process is killed with SIGKILL while both its pool children are in
    a confirmation: one waiting inside its transaction, one after its commit. The children
    die with it (Celery sets their parent-death signal); the messages stay unacknowledged in
    Redis; with a short visibility timeout a new worker gets both again: the first payment
    is credited once (not lost), the second is not credited twice."""
    started = time.monotonic()
    worker = start_worker(CELERY_VISIBILITY_TIMEOUT=VISIBILITY_TIMEOUT)
    (account,) = drill_accounts(1, keys_per_account=1, recharge_units=0, bonus_units=0)

    waiting = _pending_card_payment(account.id)
    holder = _lock_row(drill_database.url, waiting.pk)
    committed = _pending_card_payment(account.id)
    pause = worker_control / pause_file_name(CONFIRM, [committed.pk])
    pause.touch()
    try:
        (first,) = worker.journal.wait_for(
            event="start", name=CONFIRM, args=[waiting.pk], timeout=60
        )
        wait_until(lambda: _lock_waiters() >= 1, timeout=30, what="the task to wait on the row")
        (paused,) = worker.journal.wait_for(event="paused", args=[committed.pk], timeout=60)
        assert _credits(waiting)[0] == "pending" and _credits(committed)[:2] == ("succeeded", 1)
        unacknowledged = drill_redis.hlen("unacked")
        assert unacknowledged >= 2, f"{unacknowledged} messages held unacknowledged"
        delivered_at = max(
            score for _tag, score in drill_redis.zrange("unacked_index", 0, -1, withscores=True)
        )
        children = worker.pool_pids()
        os.kill(worker.main_pid, signal.SIGKILL)
        worker.process.wait(timeout=10)
        wait_until(
            lambda: not any(alive(pid) for pid in children),
            timeout=10,
            what="the pool children to die with their parent",
        )
    finally:
        holder.rollback()
        holder.close()
        pause.unlink(missing_ok=True)
    _settle_orphans()
    assert _credits(waiting)[0] == "pending", "a killed transaction left an effect"
    assert drill_redis.hlen("unacked") == unacknowledged, "a message was lost with the worker"

    # The broker hands a message out again once it has been unacknowledged for longer than
    # the visibility timeout (checked when a worker starts, and periodically).
    time.sleep(max(0.0, delivered_at + VISIBILITY_TIMEOUT + 1 - time.time()))
    restarted = time.monotonic()
    second = start_worker(CELERY_VISIBILITY_TIMEOUT=VISIBILITY_TIMEOUT)
    for task_id in (first["task_id"], paused["task_id"]):
        runs = second.journal.wait_for(event="start", task_id=task_id, count=2, timeout=60)
        assert runs[-1]["pid"] in second.seen_children | set(second.pool_pids())
        assert runs[-1]["redelivered"]
    second.journal.wait_for(event="end", task_id=first["task_id"], state="SUCCESS", timeout=60)
    second.journal.wait_for(event="end", task_id=paused["task_id"], count=2, timeout=60)
    redelivered_in = time.monotonic() - restarted
    wait_until(lambda: drill_redis.hlen("unacked") == 0, timeout=30, what="the acknowledgements")
    assert _credits(waiting) == ("succeeded", 1, 1)
    assert _credits(committed) == ("succeeded", 1, 1)
    _assert_wallet_holds(account.id, [waiting, committed])
    report(
        f"worker main process killed with 2 tasks in flight (one mid-transaction, one after "
        f"commit before ack); both children died with it; {unacknowledged} messages stayed "
        f"unacknowledged; a new worker ran both again {redelivered_in:.1f}s after starting "
        f"(visibility timeout {VISIBILITY_TIMEOUT}s); each payment credited exactly once; "
        f"billing_audit clean; {time.monotonic() - started:.1f}s"
    )
