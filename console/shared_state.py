"""The small interface behind the gateway's shared, fast-changing state: rate-limit windows,
concurrency slots, money held per request (reservations) and counters with a time to live.

Two implementations with one contract (tests run the same cases against both):
- `RedisState`: one Lua script per operation, so each check-and-change is atomic across
  every web process.
- `LocalState`: in-process, behind a lock; correct only while one process serves the
  gateway (the embedded default of `make run`).

The database stays the only truth about money; what lives here may be lost (Redis keeps
nothing on disk) and every entry expires by itself.
"""

import hashlib
import threading
import time
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Protocol

from django.conf import settings


@dataclass(frozen=True)
class WindowResult:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: float


@dataclass(frozen=True)
class SplitHold:
    granted: bool
    parts: tuple[int, ...]  # what was held under each key, in order (all 0 when refused)
    free: int  # what was free under all the keys together, before this hold


# Quota windows count in buckets of a minute: a rolling window frees a bucket's use at the
# bucket's start plus the window's span, so a prompt frees up exactly one span after the
# minute it was made in began (at most 59 seconds before one span after the prompt itself).
QUOTA_BUCKET_MS = 60_000


@dataclass(frozen=True)
class QuotaWindow:
    """One quota window of a subscription (plans/quota.py builds them): rolling over `span_ms`
    (the 5-hour and weekly windows), or fixed, ending at `ends_ms` (a subscription month).
    Amounts and the limit are in the window's own units (thousandths of a prompt, or calls)."""

    key: str
    limit: int
    span_ms: int = 0
    ends_ms: int = 0

    @property
    def rolling(self) -> bool:
        return self.span_ms > 0


@dataclass(frozen=True)
class QuotaTake:
    """What `quota_take` did: admitted (`used` is each window's use after it), refused by the
    window at `index` (`used` before it; `reset_ms` when enough of it frees up), or stopped
    because the window at `index` is missing (Redis lost it: rebuild it, then take again)."""

    status: str  # "admitted" | "refused" | "missing"
    index: int = -1
    used: tuple[int, ...] = ()
    reset_ms: int = 0
    # Each window's generation (admitted only): which build of the window counted the take,
    # so a give-back never reaches a window rebuilt since (whose records never held it).
    generations: tuple[str, ...] = ()


@dataclass(frozen=True)
class QuotaUse:
    """A window's use now, and when its oldest use frees up (0 when it holds none)."""

    used: int
    next_reset_ms: int


class SharedState(Protocol):
    def hit_window(self, key: str, *, limit: int, window_seconds: int) -> WindowResult:
        """Count one event in the current fixed window; refused (and not counted) at `limit`."""

    def slot_acquire(self, key: str, *, token: str, limit: int, ttl_seconds: float) -> bool:
        """Take one of `limit` slots for `token`; a slot not released expires after the TTL."""

    def slot_release(self, key: str, *, token: str) -> None:
        """Give the slot back; releasing twice, or after expiry, is harmless."""

    def slot_count(self, key: str) -> int:
        """Slots held now (expired ones not counted)."""

    def hold(
        self,
        key: str,
        *,
        token: str,
        amount: int,
        ttl_seconds: float,
        ceiling: int | None = None,
    ) -> bool:
        """Atomically: if what is held under `key` now is below `ceiling` (always when None),
        hold `amount` for `token` and return True; otherwise change nothing and return False.
        Each hold expires on its own after the TTL, so one a killed process never gave back
        is gone by then however many holds come after it (a single counter whose TTL every
        request refreshes would keep it for as long as traffic goes on)."""

    def hold_within(
        self,
        keys: tuple[str, ...],
        *,
        token: str,
        amount: int,
        capacities: tuple[int, ...],
        ttl_seconds: float,
    ) -> "SplitHold":
        """Atomically: if what is free under `keys` together (each key's capacity less what is
        held under it) covers `amount`, hold it all for `token`, taking from the keys in
        order, each as much as it has free; otherwise change nothing. Unlike `hold`'s
        ceiling, which one request may cross, the amount must fit: a quantity such as pack
        tokens, not a limit. The holds are `hold`'s (released by `hold_release`, summed by
        `held`, each expiring after the TTL)."""

    def hold_release(self, key: str, *, token: str) -> None:
        """Give the token's hold back; releasing twice, or after expiry, is harmless."""

    def held(self, key: str) -> int:
        """The sum of the holds now (expired ones not counted)."""

    def renew(self, keys: list[str], *, token: str, ttl_seconds: float) -> None:
        """Make the token's slot or hold under each key expire `ttl_seconds` from now: a
        request still running keeps what it took. One that expired or was released is not
        brought back (someone else may have its room by now)."""

    def quota_take(
        self, windows: tuple[QuotaWindow, ...], *, amount: int, now_ms: int
    ) -> QuotaTake:
        """Atomically across `windows`: if every one of them has room for `amount` (use +
        amount <= limit), count it in each (in the bucket of `now_ms` for rolling ones);
        otherwise change nothing. A missing window stops the take before anything is
        counted. The time is the caller's, so a frozen clock moves the windows."""

    def quota_give_back(
        self,
        windows: tuple[QuotaWindow, ...],
        *,
        amount: int,
        taken_ms: int,
        now_ms: int,
        generations: tuple[str, ...] | None = None,
    ) -> None:
        """Take back `amount` counted at `taken_ms` (a request that ended up counting
        nothing). A bucket that has rolled out of its window already gave it back; a missing
        window is left missing, and one rebuilt since the take (another generation) is left
        alone: its records never held it."""

    def quota_load(self, window: QuotaWindow, *, buckets: dict[int, int], now_ms: int) -> bool:
        """Rebuild a missing window from durable records: `buckets` maps a time (epoch ms) to
        the use counted then. Does nothing and returns False if the window exists."""

    def quota_use(self, windows: tuple[QuotaWindow, ...], *, now_ms: int) -> list[QuotaUse | None]:
        """Each window's use now (None for a missing one), rolled forward to `now_ms`."""

    def get_int(self, key: str) -> int:
        """The counter's value, 0 when absent or expired."""

    def delete(self, key: str) -> None: ...

    def hash_set(self, key: str, field: str, value: str) -> None:
        """Remember `value` under `field` (last write wins): buffered last-used times."""

    def hash_drain(self, key: str) -> dict[str, str]:
        """Take every field and empty the hash, atomically (a flush that loses nothing)."""

    def ping(self) -> None:
        """Raise if the backing store cannot be reached."""


# --- Redis ----------------------------------------------------------------------------------

_HIT_WINDOW = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then ttl = tonumber(ARGV[2]) end
if current >= tonumber(ARGV[1]) then
  return {0, current, ttl}
end
current = redis.call('INCR', KEYS[1])
if current == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return {1, current, ttl}
"""

# Slot expiry uses the Redis server's clock, so web processes on different hosts agree.
_NOW = "local t = redis.call('TIME'); local now = tonumber(t[1]) + tonumber(t[2]) / 1000000\n"

_SLOT_ACQUIRE = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3]) * 1000) + 1000)
return 1
"""
)

_SLOT_COUNT = _NOW + "return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')\n"

# Holds: a sorted set of "<token>:<amount>" scored by expiry (Redis's clock, as for slots).
# Summing walks the live holds: as many as the account has requests in flight.
_HOLD = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[3] ~= '' then
  local total = 0
  for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    total = total + tonumber(string.match(member, ':(%d+)$'))
  end
  if total >= tonumber(ARGV[3]) then return 0 end
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[1] .. ':' .. ARGV[2])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[4]) * 1000) + 1000)
return 1
"""
)

# Holds that must fit: the keys' live holds summed, then the amount taken from the keys in
# order. ARGV: token, amount, TTL, then one capacity per key.
_HOLD_WITHIN = (
    _NOW
    + """
local free = {}
local total_free = 0
for index, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local held = 0
  for _, member in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    held = held + tonumber(string.match(member, ':(%d+)$'))
  end
  free[index] = math.max(tonumber(ARGV[3 + index]) - held, 0)
  total_free = total_free + free[index]
end
local left = tonumber(ARGV[2])
if total_free < left then return {0, total_free} end
local result = {1, total_free}
for index, key in ipairs(KEYS) do
  local part = math.min(left, free[index])
  if part > 0 then
    -- %d: Lua would write a large number as 1e+14, which the sums could not read back.
    redis.call('ZADD', key, now + tonumber(ARGV[3]), ARGV[1] .. ':' .. string.format('%d', part))
    redis.call('PEXPIRE', key, math.ceil(tonumber(ARGV[3]) * 1000) + 1000)
  end
  left = left - part
  result[index + 2] = part
end
return result
"""
)

_HOLD_RELEASE = """
local prefix = ARGV[1] .. ':'
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if string.sub(member, 1, #prefix) == prefix then redis.call('ZREM', KEYS[1], member) end
end
"""

_HELD = (
    _NOW
    + """
local total = 0
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
  total = total + tonumber(string.match(member, ':(%d+)$'))
end
return total
"""
)

# A slot's member is the token; a hold's is "<token>:<amount>". Only live ones are renewed,
# and a key's own expiry is only ever pushed later.
_RENEW = (
    _NOW
    + """
local prefix = ARGV[1] .. ':'
local expires = now + tonumber(ARGV[2])
local key_ms = math.ceil(tonumber(ARGV[2]) * 1000) + 1000
for _, key in ipairs(KEYS) do
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', key, '(' .. now, '+inf')) do
    if member == ARGV[1] or string.sub(member, 1, #prefix) == prefix then
      redis.call('ZADD', key, 'XX', expires, member)
      if redis.call('PTTL', key) < key_ms then redis.call('PEXPIRE', key, key_ms) end
    end
  end
end
"""
)

_HASH_DRAIN = """
local values = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
return values
"""

# Quota windows: one hash per window. Field "t" is the window's use, "v" the generation of the
# build that made it (quota_load), and in a rolling window each bucket (a minute's number since
# the epoch) holds what was counted in it, with "o" at or below the oldest bucket. The time
# is the caller's (ARGV), never redis.call('TIME'): tests move it with a frozen clock.
_QUOTA_LIB = """
local function quota_roll(key, span, now, bms)
  local cutoff = math.floor((now - span) / bms)
  local oldest = tonumber(redis.call('HGET', key, 'o'))
  if oldest and oldest <= cutoff then
    local gone, next_oldest = 0, cutoff + 1
    if cutoff - oldest > 4 * redis.call('HLEN', key) then
      -- A long idle gap: look at the buckets there are, not at every minute that passed.
      local nearest = nil
      for _, field in ipairs(redis.call('HKEYS', key)) do
        local bucket = tonumber(field)
        if bucket then
          if bucket <= cutoff then
            gone = gone + tonumber(redis.call('HGET', key, field))
            redis.call('HDEL', key, field)
          elseif not nearest or bucket < nearest then
            nearest = bucket
          end
        end
      end
      if nearest then next_oldest = nearest end
    else
      for bucket = oldest, cutoff do
        local field = string.format('%d', bucket)
        local value = redis.call('HGET', key, field)
        if value then
          gone = gone + tonumber(value)
          redis.call('HDEL', key, field)
        end
      end
    end
    redis.call('HSET', key, 'o', string.format('%d', next_oldest))
    if gone ~= 0 then redis.call('HINCRBY', key, 't', -gone) end
  end
  return tonumber(redis.call('HGET', key, 't') or '0')
end

local function quota_frees(key, span, bms, need)
  local buckets = {}
  for _, field in ipairs(redis.call('HKEYS', key)) do
    local bucket = tonumber(field)
    if bucket then table.insert(buckets, bucket) end
  end
  table.sort(buckets)
  local freed, at = 0, 0
  for _, bucket in ipairs(buckets) do
    local value = tonumber(redis.call('HGET', key, string.format('%d', bucket)))
    if value > 0 then
      freed = freed + value
      at = bucket * bms + span
      if freed >= need then return at end
    end
  end
  return at
end
"""

# ARGV: now, amount, bucket ms, then (limit, span, ends) per window.
_QUOTA_TAKE = (
    _QUOTA_LIB
    + """
local now, amount, bms = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for index, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 0 then return {'missing', index - 1, 0} end
end
local used = {}
for index, key in ipairs(KEYS) do
  local base = 3 + (index - 1) * 3
  local limit, span = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
  local ends = tonumber(ARGV[base + 3])
  if span > 0 then
    used[index] = quota_roll(key, span, now, bms)
  else
    used[index] = tonumber(redis.call('HGET', key, 't') or '0')
  end
  if used[index] + amount > limit then
    local reset = ends
    if span > 0 then reset = quota_frees(key, span, bms, used[index] + amount - limit) end
    return {'refused', index - 1, reset, used[index]}
  end
end
local bucket = math.floor(now / bms)
local field = string.format('%d', bucket)
local result = {'admitted', -1, 0}
for index, key in ipairs(KEYS) do
  local span = tonumber(ARGV[3 + (index - 1) * 3 + 2])
  redis.call('HINCRBY', key, 't', amount)
  if span > 0 then
    redis.call('HINCRBY', key, field, amount)
    local oldest = tonumber(redis.call('HGET', key, 'o'))
    if not oldest or oldest > bucket then redis.call('HSET', key, 'o', field) end
    redis.call('PEXPIRE', key, span + bms)
  end
  result[index + 3] = used[index] + amount
end
for index, key in ipairs(KEYS) do
  result[#KEYS + index + 3] = redis.call('HGET', key, 'v')
end
return result
"""
)

# ARGV: amount, the bucket it was counted in, then (span (0: fixed), generation ('': any)) per
# window.
_QUOTA_GIVE_BACK = """
local amount, field = tonumber(ARGV[1]), ARGV[2]
for index, key in ipairs(KEYS) do
  local span, generation = tonumber(ARGV[1 + index * 2]), ARGV[2 + index * 2]
  local current = redis.call('HGET', key, 'v')
  if current and (generation == '' or generation == current) then
    local take = math.min(amount, tonumber(redis.call('HGET', key, 't') or '0'))
    if span > 0 then
      take = math.min(take, tonumber(redis.call('HGET', key, field) or '0'))
      if take > 0 then redis.call('HINCRBY', key, field, -take) end
    end
    if take > 0 then redis.call('HINCRBY', key, 't', -take) end
  end
end
"""

# ARGV: the key's time to live (ms), rolling (1/0), the generation, then (bucket, amount) pairs.
_QUOTA_LOAD = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local total, oldest = 0, nil
redis.call('HSET', KEYS[1], 'v', ARGV[3])
for index = 4, #ARGV, 2 do
  local amount = tonumber(ARGV[index + 1])
  total = total + amount
  if ARGV[2] == '1' then
    local bucket = tonumber(ARGV[index])
    redis.call('HINCRBY', KEYS[1], ARGV[index], amount)
    if not oldest or bucket < oldest then oldest = bucket end
  end
end
redis.call('HSET', KEYS[1], 't', string.format('%d', total))
if oldest then redis.call('HSET', KEYS[1], 'o', string.format('%d', oldest)) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""

# ARGV: now, bucket ms, then (span, ends) per window. Returns (exists, used, next reset).
_QUOTA_USE = (
    _QUOTA_LIB
    + """
local now, bms = tonumber(ARGV[1]), tonumber(ARGV[2])
local result = {}
for index, key in ipairs(KEYS) do
  local span, ends = tonumber(ARGV[1 + index * 2]), tonumber(ARGV[2 + index * 2])
  if redis.call('EXISTS', key) == 0 then
    table.insert(result, 0); table.insert(result, 0); table.insert(result, 0)
  else
    local used, reset = 0, 0
    if span > 0 then
      used = quota_roll(key, span, now, bms)
      if used > 0 then reset = quota_frees(key, span, bms, 1) end
    else
      used = tonumber(redis.call('HGET', key, 't') or '0')
      reset = ends
    end
    table.insert(result, 1); table.insert(result, used); table.insert(result, reset)
  end
end
return result
"""
)


def _quota_buckets(amounts: dict[int, int]) -> dict[int, int]:
    """Amounts by time (epoch ms) summed into the windows' minute buckets."""
    buckets: dict[int, int] = {}
    for at_ms, amount in amounts.items():
        bucket = int(at_ms) // QUOTA_BUCKET_MS
        buckets[bucket] = buckets.get(bucket, 0) + int(amount)
    return buckets


def _quota_ttl_ms(window: QuotaWindow, now_ms: int) -> int:
    """How long a window's key outlives its last write: a rolling window's span (after it,
    all it held has freed up), a fixed one's end (at least a second)."""
    if window.rolling:
        return window.span_ms + QUOTA_BUCKET_MS
    return max(int(window.ends_ms) - int(now_ms), 1000)


class RedisState:
    def __init__(self, url: str, prefix: str = "console:state:"):
        import redis

        self.client = redis.Redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=2, health_check_interval=30
        )
        self.prefix = prefix
        self._hit_window = self.client.register_script(_HIT_WINDOW)
        self._slot_acquire = self.client.register_script(_SLOT_ACQUIRE)
        self._slot_count = self.client.register_script(_SLOT_COUNT)
        self._hold = self.client.register_script(_HOLD)
        self._hold_within = self.client.register_script(_HOLD_WITHIN)
        self._hold_release = self.client.register_script(_HOLD_RELEASE)
        self._held = self.client.register_script(_HELD)
        self._hash_drain = self.client.register_script(_HASH_DRAIN)
        self._renew = self.client.register_script(_RENEW)
        self._quota_take = self.client.register_script(_QUOTA_TAKE)
        self._quota_give_back = self.client.register_script(_QUOTA_GIVE_BACK)
        self._quota_load = self.client.register_script(_QUOTA_LOAD)
        self._quota_use = self.client.register_script(_QUOTA_USE)

    def _key(self, key: str) -> str:
        return self.prefix + key

    def hit_window(self, key: str, *, limit: int, window_seconds: int) -> WindowResult:
        window_ms = int(window_seconds * 1000)
        allowed, count, ttl_ms = self._hit_window(keys=[self._key(key)], args=[limit, window_ms])
        return WindowResult(
            allowed=bool(allowed),
            limit=limit,
            remaining=max(limit - int(count), 0),
            reset_seconds=int(ttl_ms) / 1000,
        )

    def slot_acquire(self, key: str, *, token: str, limit: int, ttl_seconds: float) -> bool:
        return bool(self._slot_acquire(keys=[self._key(key)], args=[token, limit, ttl_seconds]))

    def slot_release(self, key: str, *, token: str) -> None:
        self.client.zrem(self._key(key), token)

    def slot_count(self, key: str) -> int:
        return int(self._slot_count(keys=[self._key(key)]))

    def hold(
        self,
        key: str,
        *,
        token: str,
        amount: int,
        ttl_seconds: float,
        ceiling: int | None = None,
    ) -> bool:
        limit = "" if ceiling is None else ceiling
        return bool(
            self._hold(keys=[self._key(key)], args=[token, int(amount), limit, ttl_seconds])
        )

    def hold_within(
        self,
        keys: tuple[str, ...],
        *,
        token: str,
        amount: int,
        capacities: tuple[int, ...],
        ttl_seconds: float,
    ) -> SplitHold:
        result = self._hold_within(
            keys=[self._key(key) for key in keys],
            args=[token, int(amount), ttl_seconds, *(int(capacity) for capacity in capacities)],
        )
        if not result[0]:
            return SplitHold(False, (0,) * len(keys), int(result[1]))
        return SplitHold(True, tuple(int(part) for part in result[2:]), int(result[1]))

    def hold_release(self, key: str, *, token: str) -> None:
        self._hold_release(keys=[self._key(key)], args=[token])

    def held(self, key: str) -> int:
        return int(self._held(keys=[self._key(key)]))

    def renew(self, keys: list[str], *, token: str, ttl_seconds: float) -> None:
        self._renew(keys=[self._key(key) for key in keys], args=[token, ttl_seconds])

    def quota_take(
        self, windows: tuple[QuotaWindow, ...], *, amount: int, now_ms: int
    ) -> QuotaTake:
        args = [int(now_ms), int(amount), QUOTA_BUCKET_MS]
        for window in windows:
            args += [int(window.limit), int(window.span_ms), int(window.ends_ms)]
        result = self._quota_take(keys=[self._key(window.key) for window in windows], args=args)
        status = result[0].decode()
        if status != "admitted":
            numbers = tuple(int(value) for value in result[3:])
            return QuotaTake(status, int(result[1]), numbers, int(result[2]))
        count = len(windows)
        used = tuple(int(value) for value in result[3 : 3 + count])
        generations = tuple(value.decode() for value in result[3 + count :])
        return QuotaTake(status, -1, used, 0, generations)

    def quota_give_back(
        self,
        windows: tuple[QuotaWindow, ...],
        *,
        amount: int,
        taken_ms: int,
        now_ms: int,
        generations: tuple[str, ...] | None = None,
    ) -> None:
        args = [int(amount), str(int(taken_ms) // QUOTA_BUCKET_MS)]
        for index, window in enumerate(windows):
            args += [int(window.span_ms), generations[index] if generations else ""]
        self._quota_give_back(keys=[self._key(window.key) for window in windows], args=args)

    def quota_load(self, window: QuotaWindow, *, buckets: dict[int, int], now_ms: int) -> bool:
        args = [_quota_ttl_ms(window, now_ms), 1 if window.rolling else 0, uuid.uuid4().hex]
        for bucket, amount in _quota_buckets(buckets).items():
            args += [bucket, amount]
        return bool(self._quota_load(keys=[self._key(window.key)], args=args))

    def quota_use(self, windows: tuple[QuotaWindow, ...], *, now_ms: int) -> list[QuotaUse | None]:
        args = [int(now_ms), QUOTA_BUCKET_MS]
        for window in windows:
            args += [int(window.span_ms), int(window.ends_ms)]
        flat = self._quota_use(keys=[self._key(window.key) for window in windows], args=args)
        return [
            QuotaUse(int(flat[index + 1]), int(flat[index + 2])) if flat[index] else None
            for index in range(0, len(flat), 3)
        ]

    def get_int(self, key: str) -> int:
        value = self.client.get(self._key(key))
        return int(value) if value is not None else 0

    def delete(self, key: str) -> None:
        self.client.delete(self._key(key))

    def hash_set(self, key: str, field: str, value: str) -> None:
        self.client.hset(self._key(key), field, value)

    def hash_drain(self, key: str) -> dict[str, str]:
        flat = self._hash_drain(keys=[self._key(key)])
        return {flat[index].decode(): flat[index + 1].decode() for index in range(0, len(flat), 2)}

    def ping(self) -> None:
        self.client.ping()


# --- In-process -----------------------------------------------------------------------------


class LocalState:
    def __init__(self, clock=time.monotonic):
        self._lock = threading.Lock()
        self._clock = clock
        self._counters: dict[str, tuple[int, float]] = {}  # key → (value, expires at)
        self._slots: dict[str, dict[str, float]] = {}  # key → token → expires at
        self._holds: dict[str, dict[str, tuple[int, float]]] = {}  # key → token → (amount, expires)
        self._hashes: dict[str, dict[str, str]] = {}
        self._quotas: dict[str, dict] = {}

    def _counter(self, key: str, now: float) -> tuple[int, float] | None:
        entry = self._counters.get(key)
        if entry is not None and entry[1] <= now:
            del self._counters[key]
            return None
        return entry

    def hit_window(self, key: str, *, limit: int, window_seconds: int) -> WindowResult:
        with self._lock:
            now = self._clock()
            entry = self._counter(key, now) or (0, now + window_seconds)
            count, expires = entry
            if count >= limit:
                return WindowResult(False, limit, 0, expires - now)
            self._counters[key] = (count + 1, expires)
            return WindowResult(True, limit, limit - count - 1, expires - now)

    def _live_slots(self, key: str, now: float) -> dict[str, float]:
        slots = self._slots.setdefault(key, {})
        for token in [token for token, expires in slots.items() if expires <= now]:
            del slots[token]
        return slots

    def slot_acquire(self, key: str, *, token: str, limit: int, ttl_seconds: float) -> bool:
        with self._lock:
            now = self._clock()
            slots = self._live_slots(key, now)
            if token in slots:
                return True
            if len(slots) >= limit:
                return False
            slots[token] = now + ttl_seconds
            return True

    def slot_release(self, key: str, *, token: str) -> None:
        with self._lock:
            self._slots.get(key, {}).pop(token, None)

    def slot_count(self, key: str) -> int:
        with self._lock:
            return len(self._live_slots(key, self._clock()))

    def _live_holds(self, key: str, now: float) -> dict[str, tuple[int, float]]:
        holds = self._holds.setdefault(key, {})
        for token in [token for token, (_amount, expires) in holds.items() if expires <= now]:
            del holds[token]
        return holds

    def hold(
        self,
        key: str,
        *,
        token: str,
        amount: int,
        ttl_seconds: float,
        ceiling: int | None = None,
    ) -> bool:
        with self._lock:
            now = self._clock()
            holds = self._live_holds(key, now)
            if ceiling is not None and sum(held for held, _ in holds.values()) >= ceiling:
                return False
            holds[token] = (int(amount), now + ttl_seconds)
            return True

    def hold_within(
        self,
        keys: tuple[str, ...],
        *,
        token: str,
        amount: int,
        capacities: tuple[int, ...],
        ttl_seconds: float,
    ) -> SplitHold:
        with self._lock:
            now = self._clock()
            free = [
                max(int(capacity) - sum(held for held, _ in self._live_holds(key, now).values()), 0)
                for key, capacity in zip(keys, capacities, strict=True)
            ]
            if sum(free) < amount:
                return SplitHold(False, (0,) * len(keys), sum(free))
            parts, left = [], int(amount)
            for key, available in zip(keys, free, strict=True):
                part = min(left, available)
                if part > 0:
                    self._holds[key][token] = (part, now + ttl_seconds)
                parts.append(part)
                left -= part
            return SplitHold(True, tuple(parts), sum(free))

    def hold_release(self, key: str, *, token: str) -> None:
        with self._lock:
            self._holds.get(key, {}).pop(token, None)

    def held(self, key: str) -> int:
        with self._lock:
            return sum(amount for amount, _ in self._live_holds(key, self._clock()).values())

    def renew(self, keys: list[str], *, token: str, ttl_seconds: float) -> None:
        with self._lock:
            now = self._clock()
            for key in keys:
                slots = self._live_slots(key, now)
                if token in slots:
                    slots[token] = now + ttl_seconds
                holds = self._live_holds(key, now)
                if token in holds:
                    holds[token] = (holds[token][0], now + ttl_seconds)

    # Quota windows: key → {"t": use, "buckets": {bucket: amount}}; never expire here (the
    # process is the embedded default's only one, and a window past its span holds nothing).
    def _quota_roll(self, window: QuotaWindow, now_ms: int) -> dict:
        entry = self._quotas[window.key]
        if window.rolling:
            cutoff = (now_ms - window.span_ms) // QUOTA_BUCKET_MS
            for bucket in [bucket for bucket in entry["buckets"] if bucket <= cutoff]:
                entry["t"] -= entry["buckets"].pop(bucket)
        return entry

    @staticmethod
    def _quota_frees(window: QuotaWindow, entry: dict, need: int) -> int:
        freed, at = 0, 0
        for bucket in sorted(entry["buckets"]):
            if entry["buckets"][bucket] > 0:
                freed += entry["buckets"][bucket]
                at = bucket * QUOTA_BUCKET_MS + window.span_ms
                if freed >= need:
                    break
        return at

    def quota_take(
        self, windows: tuple[QuotaWindow, ...], *, amount: int, now_ms: int
    ) -> QuotaTake:
        with self._lock:
            for index, window in enumerate(windows):
                if window.key not in self._quotas:
                    return QuotaTake("missing", index)
            entries = [self._quota_roll(window, now_ms) for window in windows]
            for index, (window, entry) in enumerate(zip(windows, entries, strict=True)):
                if entry["t"] + amount > window.limit:
                    reset = window.ends_ms
                    if window.rolling:
                        reset = self._quota_frees(window, entry, entry["t"] + amount - window.limit)
                    return QuotaTake("refused", index, (entry["t"],), reset)
            bucket = now_ms // QUOTA_BUCKET_MS
            for window, entry in zip(windows, entries, strict=True):
                entry["t"] += amount
                if window.rolling:
                    entry["buckets"][bucket] = entry["buckets"].get(bucket, 0) + amount
            return QuotaTake(
                "admitted",
                -1,
                tuple(entry["t"] for entry in entries),
                generations=tuple(entry["v"] for entry in entries),
            )

    def quota_give_back(
        self,
        windows: tuple[QuotaWindow, ...],
        *,
        amount: int,
        taken_ms: int,
        now_ms: int,
        generations: tuple[str, ...] | None = None,
    ) -> None:
        bucket = taken_ms // QUOTA_BUCKET_MS
        with self._lock:
            for index, window in enumerate(windows):
                entry = self._quotas.get(window.key)
                if entry is None or (generations and generations[index] != entry["v"]):
                    continue
                take = min(amount, entry["t"])
                if window.rolling:
                    take = min(take, entry["buckets"].get(bucket, 0))
                    if take > 0:
                        entry["buckets"][bucket] -= take
                entry["t"] -= max(take, 0)

    def quota_load(self, window: QuotaWindow, *, buckets: dict[int, int], now_ms: int) -> bool:
        with self._lock:
            if window.key in self._quotas:
                return False
            summed = _quota_buckets(buckets)
            self._quotas[window.key] = {
                "t": sum(summed.values()),
                "buckets": summed if window.rolling else {},
                "v": uuid.uuid4().hex,
            }
            return True

    def quota_use(self, windows: tuple[QuotaWindow, ...], *, now_ms: int) -> list[QuotaUse | None]:
        uses: list[QuotaUse | None] = []
        with self._lock:
            for window in windows:
                if window.key not in self._quotas:
                    uses.append(None)
                    continue
                entry = self._quota_roll(window, now_ms)
                if not window.rolling:
                    uses.append(QuotaUse(entry["t"], window.ends_ms))
                    continue
                reset = self._quota_frees(window, entry, 1) if entry["t"] > 0 else 0
                uses.append(QuotaUse(entry["t"], reset))
        return uses

    def get_int(self, key: str) -> int:
        with self._lock:
            entry = self._counter(key, self._clock())
            return entry[0] if entry else 0

    def delete(self, key: str) -> None:
        with self._lock:
            self._counters.pop(key, None)
            self._slots.pop(key, None)
            self._holds.pop(key, None)
            self._hashes.pop(key, None)
            self._quotas.pop(key, None)

    def hash_set(self, key: str, field: str, value: str) -> None:
        with self._lock:
            self._hashes.setdefault(key, {})[field] = value

    def hash_drain(self, key: str) -> dict[str, str]:
        with self._lock:
            return self._hashes.pop(key, {})

    def ping(self) -> None:
        return None


@cache
def shared_state() -> SharedState:
    """The process's implementation, chosen by SHARED_STATE_BACKEND."""
    if settings.SHARED_STATE_BACKEND == "redis":
        return RedisState(settings.REDIS_URL)
    return LocalState()


# --- The keys: one builder each, so every writer and reader spells them alike ---------------
# Ids are the database's; the prefixes keep the kinds apart in one Redis database.


def rate_window_key(account_id: int) -> str:
    """The account's per-minute request window (the gateway's 1303)."""
    return f"rpm:{account_id}"


def rate_refused_key(account_id: int) -> str:
    """A window of one: whether a 1303 refusal is the account's first this minute."""
    return f"rpm-refused:{account_id}"


def concurrency_key(account_id: int) -> str:
    """The account's concurrency slots, one per request in flight."""
    return f"conc:{account_id}"


def account_hold_key(account_id: int) -> str:
    """The money held for an account's requests in flight: one hold per request, each
    expiring on its own after GATEWAY_RESERVATION_TTL, so what a killed web worker held
    comes back even while the account keeps sending."""
    return f"hold:account:{account_id}"


def project_hold_key(project_id: int) -> str:
    """The money held for a project's requests in flight, as for the account."""
    return f"hold:project:{project_id}"


def reservation_keys(*, account_id: int, project_id: int) -> tuple[str, str]:
    """The account's and the project's money holds, in the order admission takes them."""
    return account_hold_key(account_id), project_hold_key(project_id)


def pack_hold_keys(*, account_id: int, model: str) -> tuple[str, str]:
    """The pack tokens held for an account's requests in flight, in the order settlement
    draws packs: those for this model only, then the general ones (shared by every model).
    Holds as for money: one per request, each with its TTL."""
    return f"hold:packs:{account_id}:{model}", f"hold:packs:{account_id}:*"


def quota_keys(subscription_id: int, month: int) -> tuple[str, str, str]:
    """A subscription's prompt windows: the rolling 5 hours, the rolling week, and its
    `month`-th subscription month (counted from 0). One subscription's windows survive an
    upgrade: the use already counted stays counted."""
    base = f"quota:{subscription_id}"
    return f"{base}:5h", f"{base}:week", f"{base}:month:{month}"


def mcp_quota_key(subscription_id: int, month: int) -> str:
    """A subscription's MCP tool calls in its `month`-th subscription month."""
    return f"quota:{subscription_id}:mcp:{month}"


def plan_concurrency_key(account_id: int) -> str:
    """The account's coding-plan requests in flight: the plan's concurrency, apart from the
    account tier's (pay-as-you-go traffic keeps its own slots)."""
    return f"conc:plan:{account_id}"


def throttle_key(scope: str, ip: str) -> str:
    """An IP address's window of POSTs to one throttled form."""
    return f"throttle:{scope}:{ip}"


def signin_address_key(address: str) -> str:
    """Failed sign-ins of one address, across IP addresses. A digest: the addresses people
    type are not kept in the shared state."""
    return "signin-address:" + hashlib.sha256(address.encode()).hexdigest()


# API keys' last-used times, written by the gateway and drained into the database.
API_KEY_LAST_USED_HASH = "api-key-last-used"
