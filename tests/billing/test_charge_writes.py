"""The charge's hot section: reads without locks first, then one round trip of writes under
the wallet lock (one statement on PostgreSQL, the same statements in turn on SQLite)."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing import writes
from billing.models import AccountMonthSpend, LedgerEntry, Wallet
from billing.reconciliation import audit_all
from billing.services import pack_grant
from gateway.settlement import charge_usage
from tests.billing.factories import funded_account
from tests.conftest import requires_postgres
from tests.threads import run_together
from usage.models import UsageRecord


def charge(account, request_id, **fields):
    return charge_usage(
        account=account,
        model="glm-4.7",
        input_tokens=fields.pop("input_tokens", 1_200),
        output_tokens=fields.pop("output_tokens", 300),
        request_id=request_id,
        project=account.projects.get(),
        **fields,
    )


@pytest.mark.django_db
@pytest.mark.embedded
@pytest.mark.parametrize("with_pack", [False, True])
def test_after_the_wallet_lock_a_charge_makes_one_round_trip_of_writes(with_pack):
    """Given a funded account (and a pack that covers part of the request)
    when it is charged
    then nothing but the locks' reads and one write batch follow the wallet lock (on
    PostgreSQL the batch is one statement)."""
    account = funded_account(recharge_units=10, bonus_units=1)
    if with_pack:
        pack_grant(account=account, tokens=1_000, reference="partial")
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        result = charge(account, "one-trip")
    assert result.fee_nano > 0 and len(result.packs) == int(with_pack)
    statements = [
        query["sql"] for query in queries.captured_queries if "SAVEPOINT" not in query["sql"]
    ]
    lock = next(i for i, sql in enumerate(statements) if "FROM billing_wallet WHERE" in sql)
    after_lock = statements[lock + 1 :]
    reads = int(with_pack)  # the packs, locked and read again under the wallet lock
    if connection.vendor == "postgresql":
        assert len(after_lock) == reads + 1
        assert "WITH entry AS (INSERT INTO" in after_lock[-1]
    entry = LedgerEntry.objects.get(account=account, request_id="one-trip")
    assert entry.fee_nano == result.fee_nano
    assert AccountMonthSpend.objects.get(account=account).spent_nano == result.fee_nano
    assert audit_all()[1] == []


@pytest.mark.django_db
@pytest.mark.embedded
def test_gated_writes_do_not_happen_when_the_gate_inserts_nothing():
    """Given a charged request id
    when a batch whose gate inserts the same entry again runs
    then the gate returns nothing and the writes it gates are skipped (the ungated run)."""
    account = funded_account(recharge_units=10)
    charge(account, "gated")
    before = Wallet.objects.get(account=account).recharge_nano
    again = LedgerEntry(
        account=account,
        kind=LedgerEntry.Kind.CHARGE,
        request_id="gated",
        fee_nano=1,
        created_at=timezone.now(),
    )
    with transaction.atomic():
        returned = writes.run(
            [
                writes.insert_write(again, name="entry", on_conflict="ON CONFLICT DO NOTHING"),
                writes.Write(
                    "wallet",
                    "UPDATE billing_wallet SET recharge_nano = recharge_nano - %s"
                    " WHERE account_id = %s AND {exists}",
                    [1, account.pk],
                    gated=True,
                ),
            ]
        )
    assert returned["entry"] is None and again.pk is None
    assert Wallet.objects.get(account=account).recharge_nano == before


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_one_request_id_charged_by_eight_threads_at_once_is_charged_once():
    """Given eight threads charging the same request id at the same moment (each passes the
    lock-free replay check before any has committed)
    when they run
    then one ledger entry is written, and every thread gets its breakdown."""
    account = funded_account(recharge_units=10, bonus_units=5)
    results = []

    def work(_index):
        results.append(charge(account, "same-id"))

    assert run_together(work, 8) == []
    assert LedgerEntry.objects.filter(account=account, request_id="same-id").count() == 1
    assert len({(r.fee_nano, r.recharge_nano, r.bonus_nano) for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert audit_all()[1] == []


@pytest.mark.django_db
@pytest.mark.embedded
def test_a_settled_usage_record_carries_its_charge_and_its_id():
    from keys.services import api_key_create
    from tests.billing.traffic import settle_one

    account = funded_account(recharge_units=10, bonus_units=10)
    key = api_key_create(account=account, project=account.projects.get(), label="k", actor=None)
    record = settle_one(key.key, input_tokens=1_200, output_tokens=300)
    entry = LedgerEntry.objects.get(account=account, request_id=record.request_id)
    stored = UsageRecord.objects.get(pk=record.pk)
    assert (stored.fee_nano, stored.recharge_nano, stored.bonus_nano) == (
        entry.fee_nano,
        -entry.recharge_delta_nano,
        -entry.bonus_delta_nano,
    )
    assert stored.fee_nano > 0
