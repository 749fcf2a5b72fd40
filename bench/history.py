"""Prompt-history search and purge at 100k and 1M rows (BENCH_SCALE=quick: 100k only).

Rows are spread over 20 accounts and 90 days, with mixed Chinese and English prompts, loaded
with COPY (the trigram index is dropped during the load and rebuilt after, as a bulk import
would). Searches run within one account and a 30-day window, through the same selector the
page uses, for 2-, 4- and 8-character texts; then the retention purge runs on the free tier
(7 days) and its rate is printed. Headline (printed last): p95 of an 8-character search at
the largest size.

    DATABASE_URL=postgres://.../scratch .venv/bin/python bench/history.py
"""

import io
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

import django

django.setup()

from django.db import connection

from console.models import Account, Tier
from console.services import user_signup
from history.forms import HistoryFilterForm
from history.models import PromptLog
from history.selectors import history_search
from history.services import history_purge_expired

SIZES = [100_000] if os.environ.get("BENCH_SCALE") == "quick" else [100_000, 1_000_000]
ACCOUNTS = 20
QUERIES = {
    2: ["智谱", "密钥", "ok", "AI"],
    4: ["开放平台", "API密钥", "rota", "发票开具"],
    8: ["智谱AI开放平台", "rotate an", "资源包扣费顺序", "GLM-4.7 "],
}
ZH = [
    "智谱AI开放平台",
    "API密钥无法使用",
    "资源包扣费顺序",
    "发票开具",
    "客服工单",
    "模型调用失败",
    "欢迎使用",
    "请帮我总结",
    "翻译成中文",
    "余额不足",
]
EN = [
    "rotate an API key",
    "explain the invoice",
    "GLM-4.7 pricing",
    "summarise this ticket",
    "translate to English",
    "why was I charged",
    "stream the answer",
    "resource pack",
]


def text(rng: random.Random) -> str:
    parts = [rng.choice(ZH if rng.random() < 0.5 else EN) for _ in range(rng.randint(2, 6))]
    return "，".join(parts) + f" #{rng.randint(0, 10**6)}"


def load(accounts, count: int, rng: random.Random) -> float:
    now = datetime.now(UTC)
    started = time.perf_counter()
    buffer = io.StringIO()
    for index in range(count):
        account = accounts[index % len(accounts)]
        prompt = text(rng)
        answer = text(rng)
        at = now - timedelta(seconds=rng.randint(0, 90 * 24 * 3600))
        search_text = f"{prompt}\n{answer}".replace("\t", " ")
        buffer.write(
            f"{account.pk}\tbench-{count}-{index}\tglm-4.7\t[]\t{{}}\t{answer}\t200\t"
            f"{rng.randint(10, 4000)}\t{rng.randint(10, 2000)}\t{rng.randint(50, 9000)}\t"
            f"{at.isoformat()}\t{search_text.replace(chr(10), chr(92) + 'n')}\t{prompt[:200]}\n"
        )
    buffer.seek(0)
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX IF EXISTS prompt_search_trgm_idx")
        with cursor.connection.cursor().copy(
            "COPY history_promptlog (account_id, request_id, model, messages, parameters, "
            "response_text, status, input_tokens, output_tokens, latency_ms, created_at, "
            "search_text, preview) FROM STDIN"
        ) as copy:
            while chunk := buffer.read(1 << 20):
                copy.write(chunk)
        cursor.execute(
            "CREATE INDEX prompt_search_trgm_idx ON history_promptlog "
            "USING gin ((UPPER(search_text::text)) gin_trgm_ops)"
        )
        cursor.execute("ANALYZE history_promptlog")
    return time.perf_counter() - started


def timings(account, query: str, repeat: int = 15) -> list[float]:
    form = HistoryFilterForm({"range": "30d", "q": query}, account=account)
    assert form.is_valid(), form.errors
    filters = form.filters()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        history_search(account=account, filters=filters)
        times.append(time.perf_counter() - started)
    return times


def percentile(values, fraction) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000


def gateway_during_purge():
    """Sequential gateway calls with full accounting: 200 while idle, then as many as fit
    while the purge runs in a thread. Needs REDIS_URL (skipped without it)."""
    import socket
    import subprocess
    import threading

    import httpx

    if not os.environ.get("REDIS_URL"):
        started = time.perf_counter()
        deleted = history_purge_expired()
        return [], [], deleted, time.perf_counter() - started
    from billing.money import NANO_PER_UNIT
    from billing.services import recharge
    from keys.services import api_key_create

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
    raw = api_key_create(account=account, project=account.projects.get(), label="b", actor=None).raw
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "console.asgi:application",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=Path(__file__).resolve().parents[1],
    )
    url = f"http://127.0.0.1:{port}/api/paas/v4/chat/completions"
    body = {
        "model": "glm-4.7",
        "messages": [{"role": "user", "content": "你好"}],
        "max_tokens": 20,
        "simulator": {"first_token_ms": 0, "chunk_ms": 0},
    }
    headers = {"Authorization": f"Bearer {raw}"}
    try:
        with httpx.Client(timeout=30) as client:
            for _ in range(100):
                try:
                    client.get(f"http://127.0.0.1:{port}/healthz")
                    break
                except httpx.HTTPError:
                    time.sleep(0.3)

            def call():
                started = time.perf_counter()
                assert client.post(url, json=body, headers=headers).status_code == 200
                return time.perf_counter() - started

            for _ in range(20):
                call()  # warm
            idle = [call() for _ in range(200)]
            result = {}

            def purge():
                started = time.perf_counter()
                result["deleted"] = history_purge_expired()
                result["seconds"] = time.perf_counter() - started

            worker = threading.Thread(target=purge)
            worker.start()
            during = []
            while worker.is_alive():
                during.append(call())
            worker.join()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return idle, during, result["deleted"], result["seconds"]


def main() -> None:
    if connection.vendor != "postgresql":
        sys.exit("bench/history.py needs DATABASE_URL=postgres://... (a scratch database)")
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    rng = random.Random(7)  # noqa: S311 - benchmark data
    stamp = time.time_ns()
    accounts = [
        user_signup(
            email=f"hist-{stamp}-{index}@example.com",
            password="bench-password-123",
            name="",
            account_name=f"history bench {index}",
            currency="CNY",
            email_verified=True,
            starter_pack=False,
            tier=Tier.objects.get(slug="enterprise"),
        )[1]
        for index in range(ACCOUNTS)
    ]
    loaded, results = 0, []
    for size in SIZES:
        seconds = load(accounts, size - loaded, rng)
        loaded = size
        row = {"rows": size, "load_s": seconds}
        for length, queries in QUERIES.items():
            times = [t for query in queries for t in timings(accounts[0], query)]
            row[length] = (statistics.median(times), sorted(times)[int(len(times) * 0.95)])
        results.append(row)
    # Purge: move half the accounts to the free tier (7 days) and time the deletion, while a
    # gateway (uvicorn, simulator answering at once) serves requests on another account.
    victims = accounts[1 : ACCOUNTS // 2 + 1]
    Account.objects.filter(pk__in=[a.pk for a in victims]).update(
        tier=Tier.objects.get(slug="free")
    )
    before = PromptLog.objects.filter(account__in=victims).count()
    idle, during, deleted, purge_seconds = gateway_during_purge()
    PromptLog.objects.filter(account__in=accounts).delete()  # leave the scratch database tidy

    print(
        f"{'rows':>10} {'load s':>7} " + " ".join(f"{f'{n}-char p50/p95 ms':>22}" for n in QUERIES)
    )
    for row in results:
        cells = " ".join(f"{row[n][0] * 1000:>10.1f} / {row[n][1] * 1000:>8.1f}  " for n in QUERIES)
        print(f"{row['rows']:>10,} {row['load_s']:>7.1f} {cells}")
    print(
        f"purge: {deleted:,} of {before:,} rows of {len(victims)} accounts in "
        f"{purge_seconds:.1f} s ({deleted / purge_seconds:,.0f} rows/s)"
    )
    if idle and during:
        print(
            f"gateway p50/p99 ms: idle {percentile(idle, 0.5):.1f} / {percentile(idle, 0.99):.1f}"
            f", during the purge {percentile(during, 0.5):.1f} / {percentile(during, 0.99):.1f}"
            f" ({len(during)} calls)"
        )
    last = results[-1]
    print(
        f"headline: an 8-character search in one account's 30 days at {last['rows']:,} rows: "
        f"p50 {last[8][0] * 1000:.1f} ms, p95 {last[8][1] * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
