"""Money held for requests in flight comes back by itself when the process holding it dies.

Found by the crash drill (drills/test_crash.py): a web worker killed mid-flight never
releases what it reserved. Reservations were one counter per account whose TTL every
admission refreshed, so while the account kept sending, the dead worker's share never
expired and shrank the account's room (its balance, budget or cap) for as long as traffic
went on. Each request now holds its own amount, expiring on its own."""

import threading
import time
import uuid

import pytest

from console.shared_state import LocalState, RedisState, concurrency_key, reservation_keys
from gateway import services


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _redis_state(client):
    kwargs = client.connection_pool.connection_kwargs
    url = f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"
    return RedisState(url, prefix=f"test:{uuid.uuid4().hex}:")


@pytest.fixture
def redis_state(redis_client):
    state = _redis_state(redis_client)
    yield state
    for key in redis_client.scan_iter(state.prefix + "*"):
        redis_client.delete(key)


@pytest.fixture(params=["local", "redis"])
def state(request):
    if request.param == "local":
        return LocalState()
    return request.getfixturevalue("redis_state")


def test_holds_admit_below_the_ceiling_sum_and_come_back_on_release(state):
    assert state.hold("h", token="a", amount=40, ceiling=100, ttl_seconds=60)
    assert state.hold("h", token="b", amount=40, ceiling=100, ttl_seconds=60)
    assert state.hold("h", token="c", amount=40, ceiling=100, ttl_seconds=60)  # 80 < 100
    assert not state.hold("h", token="d", amount=40, ceiling=100, ttl_seconds=60)  # 120
    assert state.held("h") == 120
    state.hold_release("h", token="b")
    state.hold_release("h", token="b")  # twice is harmless
    state.hold_release("h", token="never-held")
    assert state.held("h") == 80
    assert state.hold("h", token="e", amount=7, ttl_seconds=60)  # no ceiling: always
    assert state.held("h") == 87
    assert not state.hold("h", token="f", amount=1, ceiling=-5, ttl_seconds=60)  # no room
    assert state.held("other") == 0


def test_concurrent_holds_never_share_the_same_room(state):
    granted = []

    def take(index):
        if state.hold("race", token=f"t{index}", amount=10, ceiling=50, ttl_seconds=60):
            granted.append(index)

    threads = [threading.Thread(target=take, args=(index,)) for index in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) == 5 and state.held("race") == 50


def test_a_hold_nobody_releases_expires_although_others_keep_coming():
    clock = FakeClock()
    state = LocalState(clock=clock)
    state.hold("h", token="killed", amount=500, ttl_seconds=10)
    for step in range(1, 21):  # a request every half second, each released
        clock.now += 0.5
        assert state.hold("h", token=f"r{step}", amount=3, ttl_seconds=10)
        assert state.held("h") == (503 if clock.now < 1010 else 3)
        state.hold_release("h", token=f"r{step}")
    assert state.held("h") == 0


def test_a_hold_nobody_releases_expires_in_redis_although_others_keep_coming(redis_state):
    state = redis_state
    state.hold("h", token="killed", amount=500, ttl_seconds=1)
    deadline = time.monotonic() + 1.3
    while time.monotonic() < deadline:
        assert state.hold("h", token="next", amount=3, ttl_seconds=1)
        state.hold_release("h", token="next")
        time.sleep(0.05)
    assert state.held("h") == 0


@pytest.mark.django_db
def test_what_a_killed_worker_reserved_comes_back_after_the_ttl_while_the_account_sends(
    funded, settings, fresh_shared_state
):
    settings.GATEWAY_RESERVATION_TTL = 1
    account, raw, _key = funded
    auth = services.authenticate(f"Bearer {raw}")
    body = {"model": "glm-4.7", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}
    killed = services.admit(auth=auth, body=body, request_id=services.new_request_id())
    assert isinstance(killed, services.Admitted) and killed.reserved_nano > 0
    # Its worker dies: `release` never runs for it.
    account_key, project_key = reservation_keys(account_id=account.pk, project_id=auth.project.pk)
    state = fresh_shared_state
    assert state.held(account_key) == state.held(project_key) == killed.reserved_nano
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        admitted = services.admit(auth=auth, body=body, request_id=services.new_request_id())
        assert isinstance(admitted, services.Admitted), admitted
        services.release(admitted)
        time.sleep(0.25)
    assert state.held(account_key) == state.held(project_key) == 0
    assert state.slot_count(concurrency_key(account.pk)) == 0
