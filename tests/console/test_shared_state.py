"""One contract, two implementations: the in-process stand-in and Redis."""

import threading
import time
import uuid

import pytest

from console.shared_state import (
    LocalState,
    QuotaUse,
    QuotaWindow,
    RedisState,
    concurrency_key,
    rate_window_key,
)


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture(params=["local", "redis"])
def state(request):
    if request.param == "local":
        yield LocalState()
        return
    client = request.getfixturevalue("redis_client")
    prefix = f"test:{uuid.uuid4().hex}:"
    yield RedisState(_url(client), prefix=prefix)
    for key in client.scan_iter(prefix + "*"):
        client.delete(key)


def _url(client) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"


def test_a_window_admits_up_to_its_limit_then_refuses_without_counting(state):
    results = [state.hit_window(rate_window_key(1), limit=3, window_seconds=60) for _ in range(5)]
    assert [r.allowed for r in results] == [True, True, True, False, False]
    assert [r.remaining for r in results] == [2, 1, 0, 0, 0]
    assert 0 < results[-1].reset_seconds <= 60


def test_windows_are_separate_per_key(state):
    state.hit_window("rpm:a", limit=1, window_seconds=60)
    assert state.hit_window("rpm:b", limit=1, window_seconds=60).allowed


def test_slots_hold_a_limit_and_come_back_on_release(state):
    assert state.slot_acquire(concurrency_key(1), token="a", limit=2, ttl_seconds=30)
    assert state.slot_acquire(concurrency_key(1), token="b", limit=2, ttl_seconds=30)
    assert not state.slot_acquire(concurrency_key(1), token="c", limit=2, ttl_seconds=30)
    assert state.slot_count(concurrency_key(1)) == 2
    state.slot_release(concurrency_key(1), token="a")
    state.slot_release(concurrency_key(1), token="a")  # twice is harmless
    assert state.slot_count(concurrency_key(1)) == 1
    assert state.slot_acquire(concurrency_key(1), token="c", limit=2, ttl_seconds=30)


def test_acquiring_the_same_token_twice_takes_one_slot(state):
    assert state.slot_acquire(concurrency_key(2), token="a", limit=1, ttl_seconds=30)
    assert state.slot_acquire(concurrency_key(2), token="a", limit=1, ttl_seconds=30)
    assert state.slot_count(concurrency_key(2)) == 1


def test_counters_read_and_delete(state):
    state.hit_window(rate_window_key(1), limit=10, window_seconds=60)
    state.hit_window(rate_window_key(1), limit=10, window_seconds=60)
    assert state.get_int(rate_window_key(1)) == 2
    state.delete(rate_window_key(1))
    assert state.get_int(rate_window_key(1)) == 0


def test_concurrent_acquires_never_exceed_the_limit(state):
    granted = []
    barrier = threading.Barrier(16)

    def grab(index):
        barrier.wait()
        if state.slot_acquire("conc:race", token=str(index), limit=5, ttl_seconds=30):
            granted.append(index)

    threads = [threading.Thread(target=grab, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) == 5


def test_local_entries_expire_with_their_ttl():
    clock = FakeClock()
    state = LocalState(clock=clock)
    state.slot_acquire("conc", token="crashed-worker", limit=1, ttl_seconds=30)
    state.hold("reserve", token="crashed-worker", amount=10, ttl_seconds=30)
    state.hit_window("rpm", limit=1, window_seconds=60)
    clock.now += 31
    assert state.slot_acquire("conc", token="next", limit=1, ttl_seconds=30)
    assert state.held("reserve") == 0
    assert not state.hit_window("rpm", limit=1, window_seconds=60).allowed
    clock.now += 30
    assert state.hit_window("rpm", limit=1, window_seconds=60).allowed


def test_redis_slots_expire_with_their_ttl(redis_client):
    state = RedisState(_url(redis_client), prefix=f"test:{uuid.uuid4().hex}:")
    assert state.slot_acquire("conc", token="crashed", limit=1, ttl_seconds=0.2)
    assert not state.slot_acquire("conc", token="next", limit=1, ttl_seconds=0.2)
    time.sleep(0.3)
    assert state.slot_acquire("conc", token="next", limit=1, ttl_seconds=0.2)


def test_a_hash_keeps_the_last_write_and_drains_once(state):
    state.hash_set("last-used", "key1", "100")
    state.hash_set("last-used", "key1", "200")
    state.hash_set("last-used", "key2", "150")
    assert state.hash_drain("last-used") == {"key1": "200", "key2": "150"}
    assert state.hash_drain("last-used") == {}


# --- Holds that must fit (resource-pack tokens, issue 20) -------------------------------------


def fits(state, keys, token, amount, capacities, ttl=60) -> bool:
    return state.hold_within(
        keys, token=token, amount=amount, capacities=capacities, ttl_seconds=ttl
    ).granted


def test_a_fitting_hold_takes_from_the_keys_in_order_and_only_what_is_free(state):
    keys = ("packs:model", "packs:general")
    first = state.hold_within(keys, token="a", amount=60, capacities=(100, 100), ttl_seconds=60)
    assert (first.granted, first.parts, first.free) == (True, (60, 0), 200)
    second = state.hold_within(keys, token="b", amount=60, capacities=(100, 100), ttl_seconds=60)
    assert (second.granted, second.parts, second.free) == (True, (40, 20), 140)
    assert (state.held("packs:model"), state.held("packs:general")) == (100, 20)
    # 80 free, 81 wanted: refused whole, nothing held, and the free total said.
    refused = state.hold_within(keys, token="c", amount=81, capacities=(100, 100), ttl_seconds=60)
    assert (refused.granted, refused.parts, refused.free) == (False, (0, 0), 80)
    assert (state.held("packs:model"), state.held("packs:general")) == (100, 20)
    # The exact rest fits; a key held past a capacity that shrank counts as no room.
    exact = state.hold_within(keys, token="d", amount=80, capacities=(100, 100), ttl_seconds=60)
    assert exact.granted and exact.parts == (0, 80)
    shrunk = state.hold_within(keys, token="e", amount=1, capacities=(50, 100), ttl_seconds=60)
    assert (shrunk.granted, shrunk.free) == (False, 0)
    # Given back one key at a time, as `hold` is.
    for key in keys:
        state.hold_release(key, token="b")
    assert (state.held("packs:model"), state.held("packs:general")) == (60, 80)


def test_fitting_holds_large_amounts_sum_exactly(state):
    keys = ("big",)
    amount = 3 * 10**14  # Lua writes numbers this large as 3e+14 unless told otherwise
    assert fits(state, keys, "a", amount, (10**15,))
    assert state.held("big") == amount
    assert fits(state, keys, "b", 7, (10**15,))
    assert state.held("big") == amount + 7


def test_concurrent_fitting_holds_never_hold_more_than_the_capacity(state):
    granted = []
    barrier = threading.Barrier(16)

    def take(index):
        barrier.wait()
        keys = ("race:model", "race:general")
        if fits(state, keys, f"t{index}", 30, (100, 50)):
            granted.append(index)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) == 5  # 150 tokens: five holds of 30, not one more
    assert state.held("race:model") + state.held("race:general") == 150


def test_local_fitting_holds_expire_with_their_ttl():
    clock = FakeClock()
    state = LocalState(clock=clock)
    keys = ("packs:model", "packs:general")
    assert fits(state, keys, "killed", 90, (50, 50), ttl=30)
    assert not fits(state, keys, "b", 20, (50, 50), ttl=30)
    clock.now += 31
    assert state.held("packs:model") == state.held("packs:general") == 0
    assert fits(state, keys, "b", 100, (50, 50), ttl=30)


def test_redis_fitting_holds_expire_with_their_ttl(redis_client):
    state = RedisState(_url(redis_client), prefix=f"test:{uuid.uuid4().hex}:")
    keys = ("packs:model", "packs:general")
    assert fits(state, keys, "killed", 90, (50, 50), ttl=0.2)
    assert not fits(state, keys, "b", 20, (50, 50), ttl=0.2)
    time.sleep(0.3)
    assert fits(state, keys, "b", 100, (50, 50), ttl=0.2)


def test_renewing_extends_a_live_slot_and_hold_but_never_revives_one(state):
    assert state.slot_acquire("conc", token="t", limit=2, ttl_seconds=0.3)
    assert state.hold("hold", token="t", amount=40, ttl_seconds=0.3)
    assert state.hold("hold", token="other", amount=2, ttl_seconds=0.3)
    for _ in range(4):
        time.sleep(0.15)
        state.renew(["conc", "hold"], token="t", ttl_seconds=0.3)
    # 0.6 s later, twice the TTL: the renewed token's slot and hold live, the other's not.
    assert state.slot_count("conc") == 1
    assert state.held("hold") == 40
    state.slot_release("conc", token="t")
    state.hold_release("hold", token="t")
    state.renew(["conc", "hold"], token="t", ttl_seconds=60)
    assert state.slot_count("conc") == 0 and state.held("hold") == 0
    # Expired before its renewal: its room may be someone else's by now.
    assert state.slot_acquire("gone", token="t", limit=1, ttl_seconds=0.1)
    time.sleep(0.2)
    state.renew(["gone"], token="t", ttl_seconds=60)
    assert state.slot_count("gone") == 0


# --- Quota windows (the coding plan's prompts: plans/quota.py) ------------------------------

HOUR_MS = 3_600_000
T0 = 1_800_000_000_000  # a minute boundary, as epoch milliseconds


def _windows(*, five_hours=10_000, week=100_000, month=1_000_000, ends=T0 + 30 * 24 * HOUR_MS):
    return (
        QuotaWindow("quota:1:5h", five_hours, span_ms=5 * HOUR_MS),
        QuotaWindow("quota:1:week", week, span_ms=7 * 24 * HOUR_MS),
        QuotaWindow("quota:1:month:0", month, ends_ms=ends),
    )


def _load_empty(state, windows, now_ms=T0):
    for window in windows:
        assert state.quota_load(window, buckets={}, now_ms=now_ms)


def test_a_missing_window_stops_a_take_before_anything_is_counted(state):
    windows = _windows()
    state.quota_load(windows[0], buckets={}, now_ms=T0)
    taken = state.quota_take(windows, amount=1000, now_ms=T0)
    assert (taken.status, taken.index) == ("missing", 1)
    assert state.quota_use(windows, now_ms=T0)[0] == QuotaUse(0, 0)
    assert state.quota_use(windows, now_ms=T0)[1] is None


def test_a_take_counts_in_every_window_up_to_the_limit_then_refuses_without_counting(state):
    windows = _windows(five_hours=3000)
    _load_empty(state, windows)
    results = [state.quota_take(windows, amount=1000, now_ms=T0 + i) for i in range(4)]
    assert [r.status for r in results] == ["admitted"] * 3 + ["refused"]
    assert results[2].used == (3000, 3000, 3000)
    refused = results[3]
    assert refused.index == 0
    # The first minute's use frees up five hours after that minute began.
    assert refused.reset_ms == T0 + 5 * HOUR_MS
    assert [use.used for use in state.quota_use(windows, now_ms=T0)] == [3000, 3000, 3000]


def test_a_rolling_window_frees_its_oldest_use_exactly_when_the_span_has_passed(state):
    windows = _windows(five_hours=2000)
    _load_empty(state, windows)
    state.quota_take(windows, amount=1000, now_ms=T0)
    state.quota_take(windows, amount=1000, now_ms=T0 + 2 * HOUR_MS)
    assert state.quota_take(windows, amount=1000, now_ms=T0 + 5 * HOUR_MS - 1).status == "refused"
    taken = state.quota_take(windows, amount=1000, now_ms=T0 + 5 * HOUR_MS)
    assert taken.status == "admitted"
    # The week still holds all three.
    assert taken.used == (2000, 3000, 3000)


def test_the_week_binds_when_its_limit_is_low_and_frees_after_seven_days(state):
    windows = _windows(week=2000)
    _load_empty(state, windows)
    state.quota_take(windows, amount=1000, now_ms=T0)
    state.quota_take(windows, amount=1000, now_ms=T0 + 6 * HOUR_MS)
    refused = state.quota_take(windows, amount=1000, now_ms=T0 + 12 * HOUR_MS)
    assert (refused.status, refused.index) == ("refused", 1)
    assert refused.reset_ms == T0 + 7 * 24 * HOUR_MS
    later = T0 + 7 * 24 * HOUR_MS
    assert state.quota_take(windows, amount=1000, now_ms=later).status == "admitted"
    assert state.quota_use(windows, now_ms=later)[1].used == 2000


def test_a_fixed_window_refuses_until_its_end(state):
    windows = _windows(month=1000)
    _load_empty(state, windows)
    assert state.quota_take(windows, amount=1000, now_ms=T0).status == "admitted"
    refused = state.quota_take(windows, amount=1, now_ms=T0 + 8 * 24 * HOUR_MS)
    assert (refused.status, refused.index, refused.reset_ms) == ("refused", 2, windows[2].ends_ms)


def test_a_refusal_in_one_window_counts_nothing_in_the_others(state):
    windows = _windows(month=1500)
    _load_empty(state, windows)
    state.quota_take(windows, amount=1000, now_ms=T0)
    assert state.quota_take(windows, amount=1000, now_ms=T0).status == "refused"
    assert [use.used for use in state.quota_use(windows, now_ms=T0)] == [1000, 1000, 1000]


def test_giving_back_uncounts_a_take_and_never_goes_below_zero(state):
    windows = _windows()
    _load_empty(state, windows)
    state.quota_take(windows, amount=1000, now_ms=T0 + 5)
    state.quota_take(windows, amount=67, now_ms=T0 + HOUR_MS)
    state.quota_give_back(windows, amount=1000, taken_ms=T0 + 5, now_ms=T0 + HOUR_MS)
    assert [use.used for use in state.quota_use(windows, now_ms=T0 + HOUR_MS)] == [67] * 3
    # More than a bucket holds (a window rebuilt while the request ran did not count it).
    state.quota_give_back(windows, amount=500, taken_ms=T0 + HOUR_MS, now_ms=T0 + HOUR_MS)
    assert [use.used for use in state.quota_use(windows, now_ms=T0 + HOUR_MS)] == [0] * 3


def test_giving_back_after_the_bucket_rolled_out_takes_nothing_from_newer_use(state):
    windows = _windows()
    _load_empty(state, windows)
    state.quota_take(windows, amount=1000, now_ms=T0)
    later = T0 + 6 * HOUR_MS
    state.quota_take(windows, amount=1000, now_ms=later)
    state.quota_give_back(windows, amount=1000, taken_ms=T0, now_ms=later)
    uses = state.quota_use(windows, now_ms=later)
    # The 5 hours had freed it already; the week and month still held it.
    assert [use.used for use in uses] == [1000, 1000, 1000]


def test_a_load_rebuilds_a_missing_window_once(state):
    windows = _windows(five_hours=3000)
    rebuilt = {T0 - 4 * HOUR_MS: 1000, T0 - 4 * HOUR_MS + 10: 500, T0 - HOUR_MS: 1000}
    assert state.quota_load(windows[0], buckets=rebuilt, now_ms=T0)
    assert not state.quota_load(windows[0], buckets={T0: 9999}, now_ms=T0)
    for window in windows[1:]:
        state.quota_load(window, buckets={}, now_ms=T0)
    assert state.quota_use(windows, now_ms=T0)[0] == QuotaUse(2500, T0 + HOUR_MS)
    refused = state.quota_take(windows, amount=1000, now_ms=T0)
    # 1,500 of the 2,500 free up an hour from now (the records four hours old).
    assert (refused.status, refused.reset_ms) == ("refused", T0 + HOUR_MS)
    assert state.quota_take(windows, amount=500, now_ms=T0).status == "admitted"
    assert state.quota_take(windows, amount=1000, now_ms=T0 + HOUR_MS).status == "admitted"


def test_a_rolling_window_idle_for_longer_than_its_span_holds_nothing(state):
    windows = _windows()
    _load_empty(state, windows)
    for minute in range(3):
        state.quota_take(windows, amount=100, now_ms=T0 + minute * 60_000)
    much_later = T0 + 40 * 24 * HOUR_MS
    uses = state.quota_use(windows, now_ms=much_later)
    assert uses[0] == QuotaUse(0, 0) and uses[1] == QuotaUse(0, 0)


def test_concurrent_takes_never_overshoot_a_window(state):
    windows = _windows(five_hours=10_000)
    _load_empty(state, windows)
    results = []

    def take():
        results.append(state.quota_take(windows, amount=1000, now_ms=T0).status)

    threads = [threading.Thread(target=take) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count("admitted") == 10
    assert state.quota_use(windows, now_ms=T0)[0].used == 10_000


def test_a_give_back_skips_a_window_rebuilt_since_the_take(state):
    """Redis lost the window while the request ran; a rebuild from the records (which do not
    hold the running request) must not lose other requests' use to its give-back."""
    windows = _windows()
    _load_empty(state, windows)
    taken = state.quota_take(windows, amount=1000, now_ms=T0)
    assert len(taken.generations) == 3
    for window in windows:
        state.delete(window.key)
        state.quota_load(window, buckets={T0: 500}, now_ms=T0)  # another request's record
    state.quota_give_back(
        windows, amount=1000, taken_ms=T0, now_ms=T0, generations=taken.generations
    )
    assert [use.used for use in state.quota_use(windows, now_ms=T0)] == [500] * 3
