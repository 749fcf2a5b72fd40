"""Added latency and throughput of the gateway with full accounting (key lookup, limits and
reservation in Redis, the simulator, settlement: charge, usage record, prompt log) against
calling the same simulator directly on the same server, at concurrency 1, 16 and 64, stream
and non-stream. Headline (printed last): the added p50 at concurrency 1, non-stream.

Starts uvicorn (GATEWAY_BENCH_WORKERS processes, default 2) on PostgreSQL and Redis with a
zero-latency simulator, so what is measured is the gateway's own cost.

    DATABASE_URL=postgres://.../scratch REDIS_URL=redis://127.0.0.1:6379/14 \
        .venv/bin/python bench/gateway.py
"""

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
WORKERS = os.environ.get("GATEWAY_BENCH_WORKERS", "2")
BODY = {
    "model": "glm-4.7",
    "messages": [{"role": "user", "content": "你好，智谱AI开放平台"}],
    "max_tokens": 50,
    "simulator": {"first_token_ms": 0, "chunk_ms": 0, "output_tokens": 50},
}


def setup_key() -> str:
    import logging

    import django

    django.setup()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from django.core.management import call_command

    from billing.money import NANO_PER_UNIT
    from billing.services import recharge
    from console.models import Account, Tier
    from console.services import user_signup
    from keys.services import api_key_create

    call_command("migrate", verbosity=0)
    _user, account = user_signup(
        email=f"gw-bench-{time.time_ns()}@example.com",
        password="bench-password-123",
        name="",
        account_name="gateway bench",
        currency="CNY",
        email_verified=True,
        starter_pack=False,
    )
    recharge(account=account, amount_nano=10**7 * NANO_PER_UNIT, reference="bench")
    tier, _ = Tier.objects.get_or_create(
        slug="bench",
        defaults={
            "name": "Bench",
            "rank": 90,
            "retention_days": 1,
            "requests_per_minute": 10**8,
            "concurrency": 10_000,
        },
    )
    Account.objects.filter(pk=account.pk).update(tier=tier)
    return api_key_create(
        account=account, project=account.projects.get(), label="bench", actor=None
    ).raw


async def load(url: str, headers: dict, stream: bool, concurrency: int) -> tuple[list, float]:
    latencies: list[float] = []
    stop = time.perf_counter() + SECONDS
    body = {**BODY, "stream": stream}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def worker():
            while time.perf_counter() < stop:
                started = time.perf_counter()
                if stream:
                    async with client.stream("POST", url, json=body, headers=headers) as reply:
                        assert reply.status_code == 200, await reply.aread()
                        async for _line in reply.aiter_lines():
                            pass
                else:
                    reply = await client.post(url, json=body, headers=headers)
                    assert reply.status_code == 200, reply.text
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return latencies, len(latencies) / elapsed


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def main() -> None:
    if not os.environ.get("DATABASE_URL", "").startswith("postgres") or not os.environ.get(
        "REDIS_URL"
    ):
        sys.exit("bench/gateway.py needs DATABASE_URL=postgres://... and REDIS_URL=redis://...")
    raw = setup_key()
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
            "--workers",
            WORKERS,
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env={**os.environ, "DATABASE_POOL_MAX_SIZE": "40"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(base + "/healthz", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.3)
        targets = {
            "direct": (base + "/simulator/v1/chat/completions", {}),
            "gateway": (base + "/api/paas/v4/chat/completions", {"Authorization": f"Bearer {raw}"}),
        }
        rows = []
        for stream in (False, True):
            for concurrency in (1, 16, 64):
                results = {}
                for name, (url, headers) in targets.items():
                    asyncio.run(load(url, headers, stream, min(concurrency, 4)))  # warm
                    results[name] = asyncio.run(load(url, headers, stream, concurrency))
                rows.append((stream, concurrency, results))
    finally:
        server.terminate()
        server.wait(timeout=30)

    def ms(value):
        return f"{value * 1000:.1f}"

    print(
        f"{'mode':<10}{'conc':>5} {'direct p50':>11}{'p99':>8}{'rps':>7} "
        f"{'gateway p50':>12}{'p99':>8}{'rps':>7} {'added p50':>10}{'added p99':>10}"
    )
    for stream, concurrency, results in rows:
        direct, gateway = results["direct"], results["gateway"]
        d50, d99 = percentile(direct[0], 0.5), percentile(direct[0], 0.99)
        g50, g99 = percentile(gateway[0], 0.5), percentile(gateway[0], 0.99)
        print(
            f"{'stream' if stream else 'json':<10}{concurrency:>5} {ms(d50):>11}{ms(d99):>8}"
            f"{direct[1]:>7.0f} {ms(g50):>12}{ms(g99):>8}{gateway[1]:>7.0f} "
            f"{ms(g50 - d50):>10}{ms(g99 - d99):>10}"
        )
    first = rows[0][2]
    added = percentile(first["gateway"][0], 0.5) - percentile(first["direct"][0], 0.5)
    best = max(row[2]["gateway"][1] for row in rows if not row[0])
    print(
        f"headline: the gateway adds {added * 1000:.1f} ms p50 at concurrency 1 (non-stream) "
        f"and serves up to {best:.0f} req/s with full accounting "
        f"({statistics.fmean([len(r[2]['gateway'][0]) for r in rows]):.0f} calls per cell)"
    )


if __name__ == "__main__":
    main()
