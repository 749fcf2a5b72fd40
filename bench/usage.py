"""The overview, the usage page and the usage API at 10k and 1M usage records (BENCH_SCALE=
quick: 10k and 100k), against the same question asked of the raw usage records.

Records are spread over 20 accounts, 90 days, 3 projects, 4 keys and 4 models per account,
loaded with COPY, then summed into the roll-ups by `rollups_rebuild` (as `manage.py
rebuild_rollups` would after an import). Pages are rendered in-process (Django's test
client: middleware, selectors, templates; no network), for one account's default view (the
last 30 days by model). "Raw" is the usage page's aggregate computed from the records
instead of the roll-ups. Headline (printed last): the usage page at the largest size as a
multiple of the smallest.

    DATABASE_URL=postgres://.../scratch .venv/bin/python bench/usage.py
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
# Pages render {% static %}: read from the finders, not a collected manifest.
os.environ.setdefault(
    "STATICFILES_BACKEND", "django.contrib.staticfiles.storage.StaticFilesStorage"
)

import django

django.setup()

from django.db import connection
from django.db.models import Count, Sum
from django.db.models.functions import TruncDate
from django.test import Client

from billing.models import UsageDaily, UsageHourly, UsageRecord
from billing.rollups import rollups_rebuild
from billing.usage import local_today
from console.models import Tier
from console.services import user_signup
from keys.services import api_key_create
from projects.services import project_create

SIZES = [10_000, 100_000] if os.environ.get("BENCH_SCALE") == "quick" else [10_000, 1_000_000]
ACCOUNTS = 20
MODELS = ["glm-4.7", "glm-4.5-air", "glm-4.7-flash", "glm-4.5"]
REPEAT = 25


def setup_accounts(stamp):
    accounts = []
    for index in range(ACCOUNTS):
        user, account = user_signup(
            email=f"usage-{stamp}-{index}@example.com",
            password="bench-password-123",
            name="",
            account_name=f"usage bench {index}",
            currency="CNY",
            email_verified=True,
            starter_pack=False,
            tier=Tier.objects.get(slug="enterprise"),
        )
        projects = [account.projects.get()] + [
            project_create(account=account, name=f"p{n}", actor=None) for n in range(2)
        ]
        keys = [
            api_key_create(account=account, project=projects[n % 3], label=f"k{n}", actor=None).key
            for n in range(4)
        ]
        accounts.append((user, account, keys))
    return accounts


def load(accounts, count: int, rng: random.Random, first: int) -> float:
    """COPY `count` usage records (a fifth refused or failed), then rebuild the roll-ups."""
    now = datetime.now(UTC)
    started = time.perf_counter()
    buffer = io.StringIO()
    for index in range(first, first + count):
        _user, account, keys = accounts[index % len(accounts)]
        key = rng.choice(keys)
        at = now - timedelta(seconds=rng.randint(0, 90 * 24 * 3600))
        roll = rng.random()
        status, code = (200, "") if roll < 0.8 else (429, "1303") if roll < 0.95 else (502, "1230")
        tokens_in = rng.randint(10, 20_000) if status == 200 else 0
        tokens_out = rng.randint(1, 4_000) if status == 200 else 0
        fee = (tokens_in * 2_000 + tokens_out * 8_000) if status == 200 else 0
        bonus = fee // 10
        buffer.write(
            f"{account.pk}\t{key.project_id}\t{key.pk}\tu-{index}\t\tapi\t{rng.choice(MODELS)}\t"
            f"f\t{status}\t{code}\t{tokens_in}\t{tokens_out}\t0\t2000000000\t8000000000\t"
            f"{fee}\t{fee - bonus}\t{bonus}\t0\tf\t{rng.randint(100, 9000)}\t\\N\t"
            f"{at.isoformat()}\n"
        )
    buffer.seek(0)
    with connection.cursor() as cursor:
        with cursor.connection.cursor().copy(
            "COPY billing_usagerecord (account_id, project_id, api_key_id, request_id, "
            "client_request_id, source, model, stream, status, code, input_tokens, "
            "output_tokens, pack_tokens, input_price_nano, output_price_nano, fee_nano, "
            "recharge_nano, bonus_nano, arrears_nano, estimated, latency_ms, first_token_ms, "
            "created_at) FROM STDIN"
        ) as copy:
            while chunk := buffer.read(1 << 20):
                copy.write(chunk)
        cursor.execute("ANALYZE billing_usagerecord")
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    for _user, account, _keys in accounts:
        rollups_rebuild(account=account)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE billing_usagehourly")
        cursor.execute("ANALYZE billing_usagedaily")
    return loaded, time.perf_counter() - started


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


def measure(accounts) -> dict:
    user, account, _keys = accounts[0]
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)

    def get(url):
        def call():
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)

        return call

    return {
        "overview": timed(get("/")),
        "usage": timed(get("/usage/")),
        "api": timed(get("/api/console/v1/costs?bucket_width=1d&limit=31&group_by=model")),
        "raw": timed(lambda: raw_usage_page(account)),
    }


def settle_cost() -> tuple[float, float]:
    """Settlement p50 (charge, usage record, prompt log) on one account, sequentially, with
    the roll-up upserts and with them replaced by a no-op: what the roll-ups add."""
    from billing import rollups
    from billing.money import NANO_PER_UNIT
    from billing.services import recharge
    from tests.billing.traffic import settle_one

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
    real = rollups.rollup_add
    rounds = {"with": [], "without": []}
    try:
        for _ in range(3):
            rollups.rollup_add = real
            rounds["with"].append(timed(lambda: settle_one(key.key), repeat=300))
            rollups.rollup_add = lambda **kwargs: None
            rounds["without"].append(timed(lambda: settle_one(key.key), repeat=300))
    finally:
        rollups.rollup_add = real
    return statistics.median(rounds["with"]), statistics.median(rounds["without"])


def main() -> None:
    if connection.vendor != "postgresql":
        sys.exit("bench/usage.py needs DATABASE_URL=postgres://... (a scratch database)")
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    rng = random.Random(11)  # noqa: S311 - benchmark data
    accounts = setup_accounts(time.time_ns())
    loaded, results = 0, []
    for size in SIZES:
        load_s, rollup_s = load(accounts, size - loaded, rng, loaded)
        loaded = size
        ids = [account.pk for _u, account, _k in accounts]
        results.append(
            {
                "records": size,
                "load_s": load_s,
                "rollup_s": rollup_s,
                "daily_rows": UsageDaily.objects.filter(account_id__in=ids).count(),
                "hourly_rows": UsageHourly.objects.filter(account_id__in=ids).count(),
                **measure(accounts),
            }
        )
    ids = [account.pk for _u, account, _k in accounts]
    if not os.environ.get("BENCH_KEEP"):  # leave the scratch database tidy
        UsageRecord.objects.filter(account_id__in=ids).delete()
        UsageDaily.objects.filter(account_id__in=ids).delete()
        UsageHourly.objects.filter(account_id__in=ids).delete()

    print(
        f"{'records':>10} {'load s':>7} {'roll-up s':>9} {'daily':>7} {'hourly':>8} "
        f"{'overview ms':>11} {'usage ms':>9} {'API ms':>7} {'raw query ms':>12}"
    )
    for row in results:
        print(
            f"{row['records']:>10,} {row['load_s']:>7.1f} {row['rollup_s']:>9.1f} "
            f"{row['daily_rows']:>7,} {row['hourly_rows']:>8,} {row['overview']:>11.1f} "
            f"{row['usage']:>9.1f} {row['api']:>7.1f} {row['raw']:>12.1f}"
        )
    with_rollups, without = settle_cost()
    print(
        f"settle p50: {with_rollups:.2f} ms with the roll-up upserts, {without:.2f} ms without "
        f"(+{with_rollups - without:.2f} ms)"
    )
    small, large = results[0], results[-1]
    for name in ("overview", "usage", "api", "raw"):
        print(
            f"{name}: {large['records']:,} records ÷ {small['records']:,} = "
            f"{large[name] / small[name]:.2f}x"
        )
    print(
        f"raw query ÷ the usage page's roll-up read at {large['records']:,}: "
        f"the raw aggregate alone takes {large['raw'] / large['usage']:.1f}x the whole page"
    )
    print(
        f"headline: the usage page at {large['records']:,} records renders in "
        f"{large['usage']:.1f} ms, {large['usage'] / small['usage']:.2f}x its time at "
        f"{small['records']:,} (the overview {large['overview'] / small['overview']:.2f}x)"
    )


if __name__ == "__main__":
    main()
