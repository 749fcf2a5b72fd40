"""32 threads charging one account at once on PostgreSQL: nothing lost or doubled."""

import threading

import pytest
from django.db import connection

from billing.models import LedgerEntry, Wallet
from billing.reconciliation import audit_all
from billing.services import pack_grant
from console.money import NANO_PER_UNIT
from gateway.settlement import charge_usage
from tests.billing.factories import funded_account
from tests.conftest import requires_postgres

THREADS = 32
PER_THREAD = 10


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_32_threads_charging_one_account(settings):
    account = funded_account(recharge_units=50, bonus_units=25)
    project = account.projects.get()
    pack_grant(account=account, tokens=150_000, reference="shared-pack")
    barrier = threading.Barrier(THREADS)
    errors = []

    def worker(index: int) -> None:
        try:
            barrier.wait()
            for call in range(PER_THREAD):
                request_id = f"t{index}-c{call}"
                for _attempt in range(2):  # every request replayed: the replay must not count
                    charge_usage(
                        account=account,
                        model="glm-4.7",
                        input_tokens=1_000,
                        output_tokens=500,
                        request_id=request_id,
                        project=project,
                    )
        except Exception as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    charges = LedgerEntry.objects.filter(account=account, kind="charge")
    assert charges.count() == THREADS * PER_THREAD
    _accounts, problems = audit_all()
    assert problems == []
    wallet = Wallet.objects.get(account=account)
    spent = sum(charges.values_list("fee_nano", flat=True))
    assert (
        wallet.recharge_nano + wallet.bonus_nano + spent - wallet.arrears_nano == 75 * NANO_PER_UNIT
    )
