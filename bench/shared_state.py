"""Admission bookkeeping per request: one rate-limit window hit, one concurrency slot taken
and released, the shape of what the gateway does before and after each upstream call.

Measures operations per second for the in-process stand-in (the embedded default) and for
Redis (production), single-threaded and with 16 threads, and prints the Redis rate per
gateway request last (the headline: how many admissions per second Redis can carry from one
process, before any database work).

    REDIS_URL=redis://127.0.0.1:6379/15 .venv/bin/python bench/shared_state.py
"""

import os
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import common

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from console.shared_state import LocalState, RedisState, concurrency_key, rate_window_key

SECONDS = common.seconds(full=3, quick=1)


def admit(state, account: int, index: int) -> None:
    token = f"{account}:{index}"
    state.hit_window(rate_window_key(account), limit=10**9, window_seconds=60)
    state.slot_acquire(concurrency_key(account), token=token, limit=10**6, ttl_seconds=60)
    state.slot_release(concurrency_key(account), token=token)


def run(state, threads: int) -> float:
    done = [0] * threads
    stop = time.perf_counter() + SECONDS

    def worker(slot: int) -> None:
        index = 0
        while time.perf_counter() < stop:
            admit(state, slot % 4, index)
            index += 1
        done[slot] = index

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return sum(done) / SECONDS


def main() -> None:
    results = {}
    results["local, 1 thread"] = run(LocalState(), 1)
    results["local, 16 threads"] = run(LocalState(), 16)
    url = os.environ.get("REDIS_URL")
    if url:
        prefix = f"bench:{uuid.uuid4().hex}:"
        results["redis, 1 thread"] = run(RedisState(url, prefix=prefix), 1)
        results["redis, 16 threads"] = run(RedisState(url, prefix=prefix), 16)
    print(f"{'backend':<20} {'admissions/s':>14}")
    for name, rate in results.items():
        print(f"{name:<20} {rate:>14,.0f}")
    if url:
        common.report(
            "shared_state",
            {"admissions_per_second": results},
            [],
            "Redis carries "
            f"{results['redis, 16 threads']:,.0f} admissions/s from one process "
            f"({results['local, 16 threads'] / results['redis, 16 threads']:.1f}x fewer than "
            "in-process)",
        )


if __name__ == "__main__":
    main()
