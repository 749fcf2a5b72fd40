"""The gateway with a dependency failing under it (faults injected in-process; the restart
drills in drills/test_dependencies.py do it for real): the database gone is 503 / 1241 and
Redis gone is 503 / 1240, never a 500 page; a request whose settlement failed is not
charged; a request already settled is answered even if Redis is gone by then; nothing
stays held."""

import json
import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from asgiref.sync import sync_to_async
from django.db import OperationalError, connection, connections
from django.test import AsyncClient, Client
from psycopg_pool import PoolTimeout

from billing.models import LedgerEntry
from billing.services import pack_grant
from console.shared_state import account_hold_key, concurrency_key, pack_hold_keys, reservation_keys
from gateway import services, settlement
from tests.asynchronous import run_async
from tests.conftest import requires_postgres
from tests.gateway.test_chat import BODY, URL, error_of, post
from usage.models import UsageRecord

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]


def database_gone(*args, **kwargs):
    raise OperationalError("connection failed: Connection refused (injected)")


def redis_gone(*args, **kwargs):
    raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379 (injected)")


async def read(response) -> str:
    if response.streaming:
        return b"".join([chunk async for chunk in response.streaming_content]).decode()
    return response.content.decode()


async def nothing_held(state, account) -> None:
    project = await account.projects.aget(is_default=True)
    assert await sync_to_async(state.slot_count)(concurrency_key(account.pk)) == 0
    for key in reservation_keys(account_id=account.pk, project_id=project.pk):
        assert await sync_to_async(state.held)(key) == 0


@run_async
async def test_the_database_gone_is_503_1241_with_the_request_id(funded, monkeypatch):
    _account, raw, _key = funded
    monkeypatch.setattr(services, "api_key_from_header", database_gone)
    for body in (BODY, {**BODY, "stream": True}):
        response = await post(raw, body)
        assert response.status_code == 503
        assert response["content-type"] == "application/json"
        assert error_of(response) == "1241" and response["x-request-id"]
    models = await AsyncClient().get(
        "/api/paas/v4/models", headers={"Authorization": f"Bearer {raw}"}
    )
    assert (models.status_code, error_of(models)) == (503, "1241")


@run_async
async def test_the_database_gone_mid_admission_gives_the_slot_back(
    funded, monkeypatch, fresh_shared_state
):
    account, raw, _key = funded
    monkeypatch.setattr(services, "may_admit", database_gone)
    response = await post(raw)
    assert (response.status_code, error_of(response)) == (503, "1241")
    await nothing_held(fresh_shared_state, account)


@pytest.mark.parametrize("stream", [False, True])
@run_async
async def test_a_settlement_the_database_refuses_is_an_error_and_charges_nothing(
    funded, monkeypatch, fresh_shared_state, stream
):
    """The upstream answered, then the settlement's transaction failed (after the charge was
    written in it): rolled back, so nothing is charged, and the client is told so — a 503,
    or for a stream already under way an error event in place of [DONE]."""
    account, raw, _key = funded
    monkeypatch.setattr(settlement, "charge_usage", database_gone)
    response = await post(raw, {**BODY, "stream": stream})
    text = await read(response)
    if stream:
        assert response.status_code == 200
        assert '"code":"1241"' in text and "[DONE]" not in text
    else:
        assert (response.status_code, error_of(response)) == (503, "1241")
    assert not await LedgerEntry.objects.filter(account=account, kind="charge").aexists()
    assert not await UsageRecord.objects.filter(request_id=response["x-request-id"]).aexists()
    await nothing_held(fresh_shared_state, account)


@pytest.mark.parametrize("operation", ["slot_acquire", "hold"])
@run_async
async def test_redis_gone_after_the_rate_window_is_1240(
    funded, monkeypatch, fresh_shared_state, operation
):
    """Redis answered the rate-limit window, then went away before the slot or the
    reservation: the same 1240 as Redis gone from the start, recorded, costing nothing."""
    account, raw, _key = funded
    monkeypatch.setattr(fresh_shared_state, operation, redis_gone)
    response = await post(raw)
    assert (response.status_code, error_of(response)) == (503, "1240")
    record = await UsageRecord.objects.aget(request_id=response["x-request-id"])
    assert (record.status, record.code, record.fee_nano) == (503, "1240", 0)
    monkeypatch.undo()
    await nothing_held(fresh_shared_state, account)


@pytest.mark.parametrize("stream", [False, True])
@run_async
async def test_redis_gone_after_the_settlement_still_answers_the_charged_request(
    funded, monkeypatch, fresh_shared_state, stream
):
    """The request was charged; Redis went away before the slot, the reservation and the
    key's last-used time were written back. The client gets its answer (charged once), not
    a 500 or a cut stream; what Redis kept expires with its TTL."""
    account, raw, _key = funded
    for operation in ("slot_release", "hold_release", "hash_set"):
        monkeypatch.setattr(fresh_shared_state, operation, redis_gone)
    response = await post(raw, {**BODY, "stream": stream})
    text = await read(response)
    assert response.status_code == 200
    if stream:
        assert text.rstrip().endswith("data: [DONE]")
    else:
        assert json.loads(text)["choices"]
    charges = LedgerEntry.objects.filter(
        account=account, kind="charge", request_id=response["x-request-id"]
    )
    assert await charges.acount() == 1


@run_async
async def test_a_503_is_logged_as_one_warning_line_not_an_error(funded, monkeypatch, caplog):
    """Thousands of 503s a minute while the database is down: each is one warning line
    from the gateway, not an ERROR from Django on top of it."""
    _account, raw, _key = funded
    monkeypatch.setattr(services, "api_key_from_header", database_gone)
    with caplog.at_level(logging.INFO):
        response = await post(raw)
    assert (response.status_code, error_of(response)) == (503, "1241")
    assert [record.levelname for record in caplog.records if record.levelno >= logging.ERROR] == []
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert [(record.name, record.exc_info) for record in warnings] == [("gateway.views", None)]
    assert response["x-request-id"] in warnings[0].getMessage()


@requires_postgres
def test_the_api_waits_its_own_short_time_for_a_database_connection(funded, monkeypatch, settings):
    """PostgreSQL unreachable: the pool cannot hand out a connection. An API request waits
    GATEWAY_DATABASE_WAIT for one (not the pool's DATABASE_POOL_TIMEOUT) before its 503."""
    settings.GATEWAY_DATABASE_WAIT = 0.25
    _account, raw, _key = funded
    waits = []

    def no_connection(timeout=None):
        waits.append(timeout)
        raise PoolTimeout(f"couldn't get a connection after {timeout} sec (injected)")

    def request_from_a_new_thread():
        # A thread with no connection of its own, as a web worker's after PostgreSQL went.
        try:
            return Client().post(
                URL,
                json.dumps(BODY),
                content_type="application/json",
                headers={"Authorization": f"Bearer {raw}"},
            )
        finally:
            connections.close_all()

    monkeypatch.setattr(connection.pool, "getconn", no_connection)
    with ThreadPoolExecutor(max_workers=1) as executor:
        response = executor.submit(request_from_a_new_thread).result()
    monkeypatch.undo()
    assert (response.status_code, error_of(response)) == (503, "1241")
    assert waits == [0.25]


@run_async
async def test_redis_gone_between_two_holds_gives_back_the_hold_already_taken(
    funded, monkeypatch, fresh_shared_state
):
    """The account's money hold was taken, then Redis failed on the project's: the account's
    hold is given back at once, not kept from other requests until its TTL."""
    account, raw, _key = funded
    state = fresh_shared_state
    taken = []
    real_hold = state.hold

    def second_hold_fails(key, **kwargs):
        if taken:
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379 (injected)")
        taken.append(key)
        return real_hold(key, **kwargs)

    monkeypatch.setattr(state, "hold", second_hold_fails)
    response = await post(raw)
    assert (response.status_code, error_of(response)) == (503, "1240")
    assert taken and taken[0] == account_hold_key(account.pk)
    monkeypatch.undo()
    await nothing_held(state, account)


@run_async
async def test_redis_gone_after_a_pack_hold_gives_the_pack_tokens_back(
    funded, monkeypatch, fresh_shared_state
):
    """A pack hold Redis took but whose reply never came back (a timeout): the tokens are
    given back, so pack-covered requests are not refused for the TTL."""
    account, raw, _key = funded
    await sync_to_async(pack_grant)(account=account, tokens=1_000_000, reference="outage")
    state = fresh_shared_state
    real_hold_within = state.hold_within

    def taken_then_lost(keys, **kwargs):
        real_hold_within(keys, **kwargs)
        raise redis.TimeoutError("Timeout reading from 127.0.0.1:6379 (injected)")

    monkeypatch.setattr(state, "hold_within", taken_then_lost)
    response = await post(raw)
    assert (response.status_code, error_of(response)) == (503, "1240")
    monkeypatch.undo()
    for key in pack_hold_keys(account_id=account.pk, model=BODY["model"]):
        assert await sync_to_async(state.held)(key) == 0
    await nothing_held(state, account)


@requires_postgres
def test_every_connection_the_api_makes_waits_only_its_short_time(funded, monkeypatch):
    """Inside the API's database work each (re)connection asks the pool with the short wait,
    the first and any later one (Django reconnects by itself when PostgreSQL went away in a
    transaction): the restart drill saw 10 s answers from such a reconnection before."""
    from console.database import connection_wait

    asked = []
    real_getconn = connection.pool.getconn

    def getconn(timeout=None):
        asked.append(timeout)
        return real_getconn(timeout=timeout)

    def in_a_new_thread():
        try:
            with connection_wait(0.5):
                for _reconnect in range(2):
                    with connection.cursor() as cursor:
                        cursor.execute("SELECT 1")
                        assert cursor.fetchone() == (1,)
                    connection.close()  # as Django does with a connection that broke
            with connection.cursor() as cursor:  # outside: the pool's own wait again
                cursor.execute("SELECT 1")
        finally:
            connections.close_all()

    monkeypatch.setattr(connection.pool, "getconn", getconn)
    with ThreadPoolExecutor(max_workers=1) as executor:
        executor.submit(in_a_new_thread).result()
    monkeypatch.undo()
    assert asked == [0.5, 0.5, None]


@requires_postgres
def test_a_settlement_needing_a_new_connection_waits_only_the_apis_short_time(
    funded, monkeypatch, settings
):
    """A stream admitted before PostgreSQL went away settles on a fresh connection: it waits
    GATEWAY_DATABASE_WAIT for one, as admission does, not the pool's 10 s (the restart drill
    saw a stream's closing error event after 10.2 s)."""
    settings.GATEWAY_DATABASE_WAIT = 0.25
    _account, raw, _key = funded
    admitted = services.admit_request(
        header=f"Bearer {raw}",
        body=BODY,
        invalid=None,
        request_id=services.new_request_id(),
        client_request_id="",
        stream=True,
    )
    assert isinstance(admitted, services.Admitted)
    waits = []

    def no_connection(timeout=None):
        waits.append(timeout)
        raise PoolTimeout(f"couldn't get a connection after {timeout} sec (injected)")

    def settle_in_a_new_thread():
        try:
            outcome = services.Outcome(status=200, input_tokens=5, output_tokens=5)
            settlement.settle(
                admitted=admitted, body=BODY, outcome=outcome, client_request_id="", stream=True
            )
        finally:
            connections.close_all()

    monkeypatch.setattr(connection.pool, "getconn", no_connection)
    with ThreadPoolExecutor(max_workers=1) as executor, pytest.raises(OperationalError):
        executor.submit(settle_in_a_new_thread).result()
    monkeypatch.undo()
    services.release(admitted)
    assert waits == [0.25]
    assert not LedgerEntry.objects.filter(request_id=admitted.request_id).exists()
