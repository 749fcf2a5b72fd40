"""The overview, the usage page and the usage API at 10k and 1M usage records (BENCH_SCALE=
quick: 10k and 100k), against the same question asked of the raw usage records.

Records are spread over 20 accounts, 90 days, 3 projects, 4 keys and 4 models per account
(`bench/seeds.py`: COPY, then `rollups_rebuild` as `manage.py rebuild_rollups` would after an
import; kept as a template database). Pages are rendered in-process (Django's test client:
middleware, selectors, templates; no network), for one account's default view (the last 30
days by model). "Raw" is the usage page's aggregate computed from the records instead of the
roll-ups. Also: what the roll-up upserts add to a settlement. Headline (printed last): the
usage page and the overview at the largest size as a multiple of the smallest.

    DATABASE_URL=postgres://.../scratch .venv/bin/python bench/usage.py
"""

import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import common

SIZES = [10_000, 100_000] if common.QUICK else [10_000, 1_000_000]
REPEAT = 25


def _django():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # Pages render {% static %}: read from the finders, not a collected manifest.
    os.environ.setdefault(
        "STATICFILES_BACKEND", "django.contrib.staticfiles.storage.StaticFilesStorage"
    )
    import django

    django.setup()


def timed(call, repeat=REPEAT) -> float:
    call()  # warm
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def raw_usage_page(account):
    """The usage page's default aggregate (30 days by day and model), from the records."""
    import zoneinfo

    from django.db.models import Count, Sum
    from django.db.models.functions import TruncDate

    from usage.models import UsageRecord
    from usage.selectors import local_today

    today = local_today(account, datetime.now(UTC))
    zone = zoneinfo.ZoneInfo(account.time_zone)
    start = datetime.combine(today - timedelta(days=29), datetime.min.time(), tzinfo=zone)
    return list(
        UsageRecord.objects.filter(account=account, created_at__gte=start)
        .annotate(day=TruncDate("created_at", tzinfo=zone))
        .values("day", "model")
        .annotate(n=Count("id"), fee=Sum("fee_nano"), i=Sum("input_tokens"))
        .order_by()
    )


def phase_measure() -> None:
    """The pages for the seed's first account, and the table sizes behind them."""
    _django()
    from django.test import Client

    from bench.seeds import USAGE_NAME
    from console.models import Account, Membership
    from usage.models import UsageDaily, UsageHourly, UsageRecord

    account = Account.objects.filter(name__startswith=USAGE_NAME).order_by("pk").first()
    user = Membership.objects.filter(account=account).select_related("user").first().user
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)

    def get(url):
        def call():
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)

        return call

    common.phase_result(
        {
            "records": UsageRecord.objects.count(),
            "daily_rows": UsageDaily.objects.count(),
            "hourly_rows": UsageHourly.objects.count(),
            "overview": timed(get("/")),
            "usage": timed(get("/usage/")),
            "api": timed(get("/api/console/v1/costs?bucket_width=1d&limit=31&group_by=model")),
            "raw": timed(lambda: raw_usage_page(account)),
        }
    )


def phase_settle() -> None:
    """Settlement p50 (charge, usage record, prompt log) on one account, sequentially, with
    the roll-up upserts and with them replaced by a no-op: what the roll-ups add."""
    _django()
    from billing.services import recharge
    from console.models import Tier
    from console.money import NANO_PER_UNIT
    from keys.services import api_key_create
    from portal.services import user_signup
    from tests.billing.traffic import settle_one
    from usage import rollups

    _user, account = user_signup(
        email=f"settle-{time.time_ns()}@example.com",
        password="bench-password-123",
        name="",
        account_name="settle cost",
        currency="CNY",
        email_verified=True,
        starter_pack=False,
        tier=Tier.objects.get(slug="enterprise"),
    )
    recharge(account=account, amount_nano=10**6 * NANO_PER_UNIT, reference="settle")
    key = api_key_create(account=account, project=account.projects.get(), label="k", actor=None)
    real = rollups.rollup_writes
    rounds = {"with": [], "without": []}
    repeat = 100 if common.QUICK else 300
    try:
        for _ in range(3):
            rollups.rollup_writes = real
            rounds["with"].append(timed(lambda: settle_one(key.key), repeat=repeat))
            rollups.rollup_writes = lambda **kwargs: []
            rounds["without"].append(timed(lambda: settle_one(key.key), repeat=repeat))
    finally:
        rollups.rollup_writes = real
    common.phase_result({name: statistics.median(values) for name, values in rounds.items()})


def main() -> None:
    common.require()
    small, large = SIZES
    small_seed, large_seed = common.seeds("usage", SIZES)
    out = Path(tempfile.mkdtemp(prefix="bench-usage-")) / "phase.json"
    results = []
    for template in (small_seed, large_seed):
        with common.scratch_copy(template, "usage") as url:
            results.append(common.run_phase(__file__, "measure", url, result=out))
    with common.scratch_copy(common.migrated_template(), "settle") as url:
        settle = common.run_phase(__file__, "settle", url, result=out)

    print(
        f"{'records':>10} {'daily':>7} {'hourly':>8} "
        f"{'overview ms':>11} {'usage ms':>9} {'API ms':>7} {'raw query ms':>12}"
    )
    for row in results:
        print(
            f"{row['records']:>10,} {row['daily_rows']:>7,} {row['hourly_rows']:>8,} "
            f"{row['overview']:>11.1f} {row['usage']:>9.1f} {row['api']:>7.1f} {row['raw']:>12.1f}"
        )
    print(
        f"settle p50: {settle['with']:.2f} ms with the roll-up upserts, {settle['without']:.2f} ms "
        f"without (+{settle['with'] - settle['without']:.2f} ms)"
    )
    first, last = results
    for name in ("overview", "usage", "api", "raw"):
        print(f"{name}: {large:,} records ÷ {small:,} = {last[name] / first[name]:.2f}x")
    goals = [
        common.goal(
            f"{page} page at {large:,} records ÷ at {small:,}",
            last[key] / first[key],
            1.5,
            at_most=True,
        )
        for page, key in (("overview", "overview"), ("usage", "usage"))
    ]
    common.report(
        "usage",
        {"pages": results, "settle_ms": settle},
        goals,
        f"the usage page at {large:,} records renders in {last['usage']:.1f} ms, "
        f"{last['usage'] / first['usage']:.2f}x its time at {small:,} (the overview "
        f"{last['overview'] / first['overview']:.2f}x); the raw aggregate grows "
        f"{last['raw'] / first['raw']:.1f}x",
    )


if __name__ == "__main__":
    args = common.phase_args()
    if args is None:
        main()
    else:
        {"measure": phase_measure, "settle": phase_settle}[args[0]]()
