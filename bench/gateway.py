"""The gateway side by side: what it adds to a request (p50, p99) and how many requests per
second it serves, stream and non-stream, at concurrency 1, 16 and 64, against

- **direct**: the upstream called without any proxy (`bench/upstream.py`, a bare ASGI app);
- **coding**: our coding-plan endpoint (issue 22) with the same key: the plan's concurrency
  slot and the request's prompts in its three quota windows (one Redis script), the upstream
  over HTTP, then the usage record naming the plan term, roll-ups and prompt log — no charge;
- **anthropic**: our Anthropic-compatible endpoint (issue 23) with the same key and the same
  body (a valid Messages request too): billed to the same plan as **coding**, plus the
  translation to the OpenAI-compatible upstream and back;
- **gateway**: our gateway with full accounting (key, rate window, concurrency slot and
  reservation in Redis, the upstream over HTTP, then charge, usage record, roll-ups and prompt
  log committed before the response ends), 2 uvicorn workers, all traffic on one account;
- **litellm**: LiteLLM's proxy (bench/litellm-requirements.txt, its own virtualenv under
  ~/.cache/bigmodel-console-bench/litellm, installed from PyPI on first use) in pass-through
  mode: a master key, no database, so no virtual keys, budgets, spend logs or rate limits;
  2 workers.

Both proxies forward to the same upstream over HTTP. The load comes from `wrk` (C, one
connection per concurrent client, kept alive), so the load generator costs little of the two
cores everyone shares; cells are interleaved per target so noise hits all three alike.
Headline (printed last): our added p50 at concurrency 1 as a share of LiteLLM's, and our
requests per second at concurrency 16 as a multiple of LiteLLM's.

    DATABASE_URL=postgres://.../scratch REDIS_URL=redis://127.0.0.1:6379/9 \
        .venv/bin/python bench/gateway.py
"""

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import common

SECONDS = common.seconds(full=5, quick=2)
WARM = 1.5
CONCURRENCY = [1, 16, 64]
WORKERS = os.environ.get("GATEWAY_BENCH_WORKERS", "2")
MODEL = "glm-4.7"
BODY = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "你好，智谱AI开放平台"}],
    "max_tokens": 50,
}
LITELLM_KEY = "sk-bench-litellm"
# Outside the checkout: a third-party tree in the project folder would be read by every
# project-wide search (assets, secrets, duplicates) as if it were ours.
VENV = Path(
    os.environ.get("BENCH_LITELLM_VENV")
    or Path.home() / ".cache" / "bigmodel-console-bench" / "litellm"
)
REQUIREMENTS = common.ROOT / "bench" / "litellm-requirements.txt"
# What the peer, run this way, does not do and our gateway does on every request above.
NOT_IN_LITELLM = [
    "per-key authentication against a database (it checks one master key in memory)",
    "rate window, concurrency slot and cost reservation in Redis",
    "a charge: packs, then the recharge/bonus split, ledger entries, month spend counters",
    "a usage record and roll-ups committed before the response completes",
    "a prompt log (content, searchable) written in the same transaction",
]


def litellm_python() -> Path:
    """LiteLLM's own virtualenv, made (or remade when the pins change) on first use."""
    stamp = VENV / "requirements.sha256"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    python = VENV / "bin" / "python"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"installing LiteLLM into {VENV} (once; about a minute)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "-r",
            str(REQUIREMENTS),
        ],
        check=True,
    )
    stamp.write_text(wanted)
    return python


def setup(upstream_base: str) -> tuple[str, int]:
    """An account with money and a bench tier (no practical limits), a coding plan with no
    practical limits either, a route to the upstream, and an inference key; returns the key
    and the account's id."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from billing.services import recharge
    from console.models import Account, Tier
    from console.money import NANO_PER_UNIT
    from gateway.models import UpstreamRoute
    from keys.services import api_key_create
    from portal.services import user_signup

    call_command("migrate", verbosity=0)
    UpstreamRoute.objects.update_or_create(
        model=MODEL, defaults={"base_url": upstream_base, "enabled": True, "upstream_model": ""}
    )
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
    _bench_plan(account)
    raw = api_key_create(
        account=account, project=account.projects.get(), label="bench", actor=None
    ).raw
    from django.db import connections

    connections.close_all()
    return raw, account.pk


def _bench_plan(account) -> None:
    """A plan of its own (no practical quotas or concurrency, covering the bench's model),
    bought from the balance like any plan: the coding cells measure admission and
    settlement, never a refusal."""
    from datetime import timedelta

    from django.utils import timezone

    from plans.models import CodingModel, Plan, PlanLimits, PlanPrice
    from plans.services import plan_subscribe

    plan, _ = Plan.objects.get_or_create(code="bench", defaults={"name": "Bench", "rank": 90})
    plan.coding_models.add(CodingModel.objects.get(model=MODEL))
    since = timezone.now() - timedelta(days=1)
    PlanPrice.objects.get_or_create(
        plan=plan,
        period="month",
        currency="CNY",
        defaults={"amount_nano": 1, "effective_from": since},
    )
    PlanLimits.objects.get_or_create(
        plan=plan,
        defaults={
            "prompts_5h": 10**8,
            "prompts_week": 10**8,
            "prompts_month": 10**8,
            "mcp_calls_month": 10**8,
            "concurrency": 10_000,
            "effective_from": since,
        },
    )
    plan_subscribe(account=account, plan=plan, period="month", actor=None)


def wrk_script(folder: Path, name: str, body: dict, key: str) -> Path:
    path = folder / f"{name}.lua"
    headers = 'wrk.headers["Content-Type"] = "application/json"\n'
    if key:
        headers += f'wrk.headers["Authorization"] = "Bearer {key}"\n'
    path.write_text(f'wrk.method = "POST"\nwrk.body = [==[{json.dumps(body)}]==]\n{headers}')
    return path


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(number) * {"us": 0.001, "ms": 1, "s": 1000}[unit]


def wrk(url: str, script: Path, concurrency: int, seconds: float) -> dict:
    result = subprocess.run(
        [
            common.tool("wrk", "wrk"),
            "-t",
            str(min(2, concurrency)),
            "-c",
            str(concurrency),
            "-d",
            f"{max(1, round(seconds))}s",
            "--timeout",
            "30s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    out = result.stdout
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if failed or (errors and any(int(n) for n in errors.groups())):
        raise RuntimeError(f"{url}: failed requests under load\n{out}")
    latency = dict(re.findall(r"^\s*(50|99)%\s+(\S+)\s*$", out, re.MULTILINE))
    if set(latency) != {"50", "99"}:
        raise RuntimeError(f"{url}: wrk printed no latency distribution\n{out}\n{result.stderr}")
    return {
        "p50_ms": _ms(latency["50"]),
        "p99_ms": _ms(latency["99"]),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
    }


def audit(account_id: int) -> dict:
    """Every request the gateway answered 200 has a usage record, and the books balance."""
    from django.core.management import call_command

    from usage.models import UsageRecord

    records = UsageRecord.objects.filter(account_id=account_id)
    call_command("billing_audit", verbosity=0)  # raises SystemExit on a mismatch
    return {
        "usage_records": records.count(),
        "refused_or_failed": records.exclude(status=200).count(),
        "billing_audit": "clean",
    }


def main() -> None:
    common.require(redis=True)
    litellm = litellm_python()
    up_port, gw_port, ll_port = common.free_port(), common.free_port(), common.free_port()
    upstream_base = f"http://127.0.0.1:{up_port}/v1"
    key, account_id = setup(upstream_base)
    logs = common.ROOT / "var" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    (work / "config.yaml").write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: {upstream_base}\n"
        "      api_key: none\n"
        "general_settings:\n"
        f"  master_key: {LITELLM_KEY}\n"
    )
    gateway_env = {
        **os.environ,
        "SHARED_STATE_BACKEND": "redis",
        "DATABASE_POOL_MAX_SIZE": "40",
        "DEBUG": "false",
        "PYTHONUNBUFFERED": "1",
    }
    litellm_env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "TIMEOUT_WORKER_HEALTHCHECK": "60",
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("DATABASE_URL", "REDIS_URL"):
        litellm_env.pop(name, None)  # pass-through: LiteLLM would use a database it is given
    targets = {
        "direct": (upstream_base + "/chat/completions", ""),
        "gateway": (f"http://127.0.0.1:{gw_port}/api/paas/v4/chat/completions", key),
        "coding": (f"http://127.0.0.1:{gw_port}/api/coding/paas/v4/chat/completions", key),
        "anthropic": (f"http://127.0.0.1:{gw_port}/api/anthropic/v1/messages", key),
        "litellm": (f"http://127.0.0.1:{ll_port}/v1/chat/completions", LITELLM_KEY),
    }
    cells = []
    with (
        common.server(
            common.uvicorn_command("bench.upstream:app", up_port),
            f"http://127.0.0.1:{up_port}/",
            log=logs / "upstream.log",
        ),
        common.server(
            common.uvicorn_command("config.asgi:application", gw_port, workers=int(WORKERS)),
            f"http://127.0.0.1:{gw_port}/healthz",
            env=gateway_env,
            log=logs / "gateway.log",
        ),
        common.server(
            [
                str(litellm.parent / "litellm"),
                "--config",
                str(work / "config.yaml"),
                "--host",
                "127.0.0.1",
                "--port",
                str(ll_port),
                "--num_workers",
                WORKERS,
            ],
            f"http://127.0.0.1:{ll_port}/health/liveliness",
            env=litellm_env,
            log=logs / "litellm.log",
            timeout=180,
        ),
    ):
        for stream in (False, True):
            body = {**BODY, "stream": stream}
            scripts = {
                name: wrk_script(work, f"{name}-{stream}", body, auth)
                for name, (_url, auth) in targets.items()
            }
            for concurrency in CONCURRENCY:
                cell = {"mode": "stream" if stream else "json", "concurrency": concurrency}
                for name, (url, _auth) in targets.items():
                    wrk(url, scripts[name], concurrency, WARM)  # every worker warm
                    cell[name] = wrk(url, scripts[name], concurrency, SECONDS)
                cells.append(cell)
                print(
                    f"{cell['mode']:<7}c={concurrency:<3} "
                    + "  ".join(
                        f"{n} p50 {cell[n]['p50_ms']:.1f} p99 {cell[n]['p99_ms']:.1f} ms "
                        f"{cell[n]['rps']:.0f}/s"
                        for n in targets
                    ),
                    flush=True,
                )
    checks = audit(account_id)
    print(
        f"{'mode':<7}{'conc':>5} {'direct p50':>10}{'p99':>7}{'rps':>7}  "
        f"{'gateway +p50':>12}{'+p99':>7}{'rps':>6}  {'coding +p50':>11}{'+p99':>7}{'rps':>6}  "
        f"{'anthropic +p50':>14}{'+p99':>7}{'rps':>6}  {'litellm +p50':>12}{'+p99':>7}{'rps':>6}"
    )
    for cell in cells:
        d, g, c, ll = cell["direct"], cell["gateway"], cell["coding"], cell["litellm"]
        a = cell["anthropic"]
        for proxy in (g, c, a, ll):
            proxy["added_p50_ms"] = proxy["p50_ms"] - d["p50_ms"]
            proxy["added_p99_ms"] = proxy["p99_ms"] - d["p99_ms"]
        print(
            f"{cell['mode']:<7}{cell['concurrency']:>5} {d['p50_ms']:>10.2f}{d['p99_ms']:>7.1f}"
            f"{d['rps']:>7.0f}  {g['added_p50_ms']:>12.2f}{g['added_p99_ms']:>7.1f}{g['rps']:>6.0f}"
            f"  {c['added_p50_ms']:>11.2f}{c['added_p99_ms']:>7.1f}{c['rps']:>6.0f}"
            f"  {a['added_p50_ms']:>14.2f}{a['added_p99_ms']:>7.1f}{a['rps']:>6.0f}"
            f"  {ll['added_p50_ms']:>12.2f}{ll['added_p99_ms']:>7.1f}{ll['rps']:>6.0f}"
        )
    print(
        f"accounting: {checks['usage_records']:,} usage records, "
        f"{checks['refused_or_failed']} refused or failed, billing_audit {checks['billing_audit']}"
    )
    print("LiteLLM, run as a pass-through, does not do: " + "; ".join(NOT_IN_LITELLM))
    by = {(c["mode"], c["concurrency"]): c for c in cells}
    goals = []
    for mode in ("json", "stream"):
        one, sixteen = by[(mode, 1)], by[(mode, 16)]
        goals.append(
            common.goal(
                f"{mode}: our added p50 ÷ LiteLLM's at concurrency 1",
                one["gateway"]["added_p50_ms"] / one["litellm"]["added_p50_ms"],
                0.25,
                at_most=True,
            )
        )
        goals.append(
            common.goal(
                f"{mode}: our req/s ÷ LiteLLM's at concurrency 16",
                sixteen["gateway"]["rps"] / sixteen["litellm"]["rps"],
                3,
                at_most=False,
            )
        )
        # Issue 22: plan admission must not cost more than the wallet's.
        goals.append(
            common.goal(
                f"{mode}: coding endpoint's added p50 ÷ pay-as-you-go's at concurrency 1",
                one["coding"]["added_p50_ms"] / one["gateway"]["added_p50_ms"],
                1.0,
                at_most=True,
            )
        )
        # Issue 23: the Anthropic endpoint (the same plan, plus the translation both ways)
        # must cost no more than the coding endpoint it bills like.
        goals.append(
            common.goal(
                f"{mode}: Anthropic endpoint's added p50 ÷ the coding endpoint's at concurrency 1",
                one["anthropic"]["added_p50_ms"] / one["coding"]["added_p50_ms"],
                1.0,
                at_most=True,
            )
        )
    one, sixteen = by[("json", 1)], by[("json", 16)]
    common.report(
        "gateway",
        {
            "cells": cells,
            "accounting": checks,
            "workers": int(WORKERS),
            "seconds": SECONDS,
            "litellm_does_not": NOT_IN_LITELLM,
        },
        goals,
        f"the gateway adds {one['gateway']['added_p50_ms']:.1f} ms p50 at concurrency 1 "
        f"(LiteLLM {one['litellm']['added_p50_ms']:.1f} ms: "
        f"{goals[0]['value']:.2f}x) and serves {sixteen['gateway']['rps']:.0f} req/s at 16 "
        f"(LiteLLM {sixteen['litellm']['rps']:.0f}: {goals[1]['value']:.2f}x), non-stream; "
        f"the coding endpoint adds {one['coding']['added_p50_ms']:.1f} ms p50 "
        f"({goals[2]['value']:.2f}x pay-as-you-go's) and serves "
        f"{sixteen['coding']['rps']:.0f} req/s at 16; the Anthropic endpoint adds "
        f"{one['anthropic']['added_p50_ms']:.1f} ms ({goals[3]['value']:.2f}x the coding "
        f"endpoint's) and serves {sixteen['anthropic']['rps']:.0f} req/s at 16",
    )


if __name__ == "__main__":
    main()
