"""Prompt-history search at two sizes (100k and 1M rows; BENCH_SCALE=quick: 10k and 100k),
the retention purge's rate, and the gateway's latency during a purge against idle.

Rows are spread over 20 accounts and 90 days, mixed Chinese and English prompts
(`bench/seeds.py`, loaded with COPY once and kept as a template database). Searches run
through the page's own form and selector (first page of 50 plus the capped count) within one
account and a 30-day window, for 2-, 4- and 8-character texts, Chinese and English.

The purge runs three times on a copy of the large seed, each time after moving three other
accounts to the free tier (7 days), while four clients call the gateway (uvicorn, the
simulator answering at once, full accounting) one request after another; the same clients'
latency for 5 s with no purge running comes first. Headline (printed last): the worst p95 ratio
large ÷ small over the query lengths, and the gateway p99 during a purge ÷ idle (medians of
the three runs).

    DATABASE_URL=postgres://.../scratch REDIS_URL=redis://127.0.0.1:6379/9 \
        .venv/bin/python bench/history.py
"""

import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import common

SIZES = [10_000, 100_000] if common.QUICK else [100_000, 1_000_000]
QUERIES = {
    2: ["智谱", "密钥", "ok", "AI"],
    4: ["开放平台", "API密钥", "rota", "发票开具"],
    8: ["智谱AI开放平台", "rotate an", "资源包扣费顺序", "GLM-4.7 "],
}
REPEAT = 15
PURGE_RUNS = 3
# Each purge moves this many accounts to the free tier: at 1M rows, ~130k rows to delete.
VICTIMS = 3
CLIENTS = 4  # gateway clients during the idle and purge windows
IDLE_SECONDS = 3 if common.QUICK else 5


def _django():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import logging

    import django

    django.setup()
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _history_accounts():
    from bench.seeds import HISTORY_NAME
    from console.models import Account

    return list(Account.objects.filter(name__startswith=HISTORY_NAME).order_by("pk"))


def phase_search() -> None:
    """p50/p95 per query length in the first account's last 30 days."""
    _django()
    from history.forms import HistoryFilterForm
    from history.models import PromptLog
    from history.selectors import history_search

    account = _history_accounts()[0]
    row = {"rows": PromptLog.objects.count()}
    for length, queries in QUERIES.items():
        times = []
        for query in queries:
            form = HistoryFilterForm({"range": "30d", "q": query}, account=account)
            assert form.is_valid(), form.errors
            filters = form.filters()
            history_search(account=account, filters=filters)  # warm
            for _ in range(REPEAT):
                started = time.perf_counter()
                history_search(account=account, filters=filters)
                times.append((time.perf_counter() - started) * 1000)
        row[str(length)] = {
            "p50_ms": statistics.median(times),
            "p95_ms": common.percentile(times, 0.95),
        }
    common.phase_result(row)


def _gateway_key() -> str:
    from billing.services import recharge
    from console.models import Tier
    from console.money import NANO_PER_UNIT
    from keys.services import api_key_create
    from portal.services import user_signup

    _user, account = user_signup(
        email=f"gw-{time.time_ns()}@example.com",
        password="bench-password-123",
        name="",
        account_name="gateway during purge",
        currency="CNY",
        email_verified=True,
        starter_pack=False,
        tier=Tier.objects.get(slug="enterprise"),
    )
    recharge(account=account, amount_nano=10**6 * NANO_PER_UNIT, reference="gw")
    return api_key_create(
        account=account, project=account.projects.get(), label="b", actor=None
    ).raw


def load(url, body, headers, done, *, seconds: float | None = None) -> list[float]:
    """Latencies (ms) of CLIENTS threads calling the gateway one request after another, for
    `seconds` or until `done()`."""
    import httpx

    stop = time.perf_counter() + seconds if seconds else None
    latencies: list[float] = []

    def client():
        with httpx.Client(timeout=30) as http:
            while not done() and (stop is None or time.perf_counter() < stop):
                started = time.perf_counter()
                answer = http.post(url, json=body, headers=headers)
                assert answer.status_code == 200, answer.text
                latencies.append((time.perf_counter() - started) * 1000)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies


def phase_purge() -> None:
    """Three purges, each of two accounts moved to the free tier, with the gateway's
    latency measured idle and during each."""
    _django()
    from django.db import connections

    from console.models import Account, Tier
    from history.models import PromptLog
    from history.services import history_purge_expired

    accounts = _history_accounts()
    raw = _gateway_key()
    connections.close_all()
    port = common.free_port()
    url = f"http://127.0.0.1:{port}/api/paas/v4/chat/completions"
    body = {
        "model": "glm-4.7",
        "messages": [{"role": "user", "content": "你好"}],
        "max_tokens": 20,
        "simulator": {"first_token_ms": 0, "chunk_ms": 0},
    }
    headers = {"Authorization": f"Bearer {raw}"}
    env = {**os.environ, "SHARED_STATE_BACKEND": "redis", "DEBUG": "false"}
    runs = []
    with common.server(
        common.uvicorn_command("config.asgi:application", port),
        f"http://127.0.0.1:{port}/healthz",
        env=env,
        log=common.ROOT / "var" / "bench" / "purge-gateway.log",
    ):
        load(url, body, headers, lambda: False, seconds=2)  # warm
        for run in range(PURGE_RUNS):
            victims = accounts[1 + VICTIMS * run : 1 + VICTIMS * (run + 1)]
            Account.objects.filter(pk__in=[a.pk for a in victims]).update(
                tier=Tier.objects.get(slug="free")
            )
            held = PromptLog.objects.filter(account__in=victims).count()
            connections.close_all()
            idle = load(url, body, headers, lambda: False, seconds=IDLE_SECONDS)
            result = {}

            def purge(result=result):
                started = time.perf_counter()
                result["deleted"] = history_purge_expired()
                result["seconds"] = time.perf_counter() - started
                connections.close_all()

            worker = threading.Thread(target=purge)
            worker.start()
            during = load(url, body, headers, lambda worker=worker: not worker.is_alive())
            worker.join()
            runs.append(
                {
                    "rows_held": held,
                    "deleted": result["deleted"],
                    "seconds": result["seconds"],
                    "rows_per_second": result["deleted"] / result["seconds"],
                    "idle_p50_ms": statistics.median(idle),
                    "idle_p99_ms": common.percentile(idle, 0.99),
                    "during_p50_ms": statistics.median(during),
                    "during_p99_ms": common.percentile(during, 0.99),
                    "calls_idle": len(idle),
                    "calls_during": len(during),
                }
            )
            print(
                f"purge {run + 1}: {result['deleted']:,} rows in {result['seconds']:.1f} s; "
                f"gateway p99 idle {runs[-1]['idle_p99_ms']:.1f} ms ({len(idle)} calls), during "
                f"{runs[-1]['during_p99_ms']:.1f} ms ({len(during)} calls)",
                flush=True,
            )
    common.phase_result(runs)


def main() -> None:
    common.require(redis=True)
    small, large = SIZES
    small_seed, large_seed = common.seeds("history", SIZES)
    out = Path(tempfile.mkdtemp(prefix="bench-history-")) / "phase.json"
    searches = []
    for template in (small_seed, large_seed):
        with common.scratch_copy(template, "history") as url:
            searches.append(common.run_phase(__file__, "search", url, result=out))
    with common.scratch_copy(large_seed, "history_purge") as url:
        purges = common.run_phase(__file__, "purge", url, result=out)

    print(f"{'rows':>10} " + " ".join(f"{f'{n}-char p50 / p95 ms':>22}" for n in QUERIES))
    for row in searches:
        cells = " ".join(
            f"{row[str(n)]['p50_ms']:>10.1f} / {row[str(n)]['p95_ms']:>8.1f}  " for n in QUERIES
        )
        print(f"{row['rows']:>10,} {cells}")
    rates = [run["rows_per_second"] for run in purges]
    idle = statistics.median(run["idle_p99_ms"] for run in purges)
    during = statistics.median(run["during_p99_ms"] for run in purges)
    print(
        f"purge: {sum(r['deleted'] for r in purges):,} rows in {len(purges)} runs, "
        f"median {statistics.median(rates):,.0f} rows/s; gateway p99 median idle {idle:.1f} ms, "
        f"during a purge {during:.1f} ms"
    )
    goals = [
        common.goal(
            f"{n}-character search p95 at {large:,} ÷ at {small:,}",
            searches[1][str(n)]["p95_ms"] / searches[0][str(n)]["p95_ms"],
            2,
            at_most=True,
        )
        for n in QUERIES
    ]
    goals.append(
        common.goal("gateway p99 during a purge ÷ idle", during / idle, 1.25, at_most=True)
    )
    worst = max(goals[:-1], key=lambda item: item["value"])
    common.report(
        "history",
        {"searches": searches, "purges": purges},
        goals,
        f"search p95 at {large:,} rows is at most {worst['value']:.2f}x its p95 at {small:,} "
        f"({worst['goal'].split(' ')[0]} the worst); purge {statistics.median(rates):,.0f} rows/s; "
        f"gateway p99 during a purge {during / idle:.2f}x idle",
    )


if __name__ == "__main__":
    args = common.phase_args()
    if args is None:
        main()
    else:
        {"search": phase_search, "purge": phase_purge}[args[0]]()
