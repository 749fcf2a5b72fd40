"""`api_key_authenticate` against a primary-key lookup of the same row, 10,000 times each,
interleaved in rounds so machine noise hits both alike. Headline (printed last): the ratio of
the p50s; the target is at most 2x.

    DATABASE_URL=postgres://... .venv/bin/python bench/authenticate.py
"""

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import common

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.db import connection, transaction

from keys.models import ApiKey
from keys.selectors import Authenticated, api_key_authenticate
from keys.services import api_key_create
from portal.services import user_signup

COUNT = int(os.environ.get("BENCH_COUNT", "2000" if common.QUICK else "10000"))
ROUNDS = 10


percentile = common.percentile


def main() -> None:
    with transaction.atomic():
        # Keys spread over many rows, as in a real table; measured inside a transaction that
        # is rolled back, so the benchmark leaves nothing behind.
        _user, account = user_signup(
            email=f"bench-{time.time_ns()}@example.com",
            password="bench-password-123",
            name="bench",
            account_name="bench",
            currency="CNY",
            email_verified=True,
        )
        project = account.projects.get()
        raws = [
            api_key_create(account=account, project=project, label=f"k{i}", actor=None).raw
            for i in range(200)
        ]
        pks = list(ApiKey.objects.filter(account=account).values_list("pk", flat=True))
        assert isinstance(api_key_authenticate(raws[0]), Authenticated)
        auth_times, pk_times, raw_pk_times = [], [], []
        per_round = COUNT // ROUNDS
        raw_sql = f"SELECT * FROM {ApiKey._meta.db_table} WHERE id = %s"  # noqa: S608
        for _round in range(ROUNDS):
            for i in range(per_round):
                started = time.perf_counter()
                ApiKey.objects.get(pk=pks[i % len(pks)])
                pk_times.append(time.perf_counter() - started)
            for i in range(per_round):
                started = time.perf_counter()
                with connection.cursor() as cursor:
                    cursor.execute(raw_sql, [pks[i % len(pks)]])
                    cursor.fetchone()
                raw_pk_times.append(time.perf_counter() - started)
            for i in range(per_round):
                started = time.perf_counter()
                api_key_authenticate(raws[i % len(raws)])
                auth_times.append(time.perf_counter() - started)
        transaction.set_rollback(True)

    def micro(value: float) -> str:
        return f"{value * 1e6:,.0f} µs"

    print(f"database: {connection.vendor}; {COUNT:,} of each")
    print(f"{'':<22}{'p50':>10}{'p99':>10}{'mean':>10}")
    rows = (
        ("pk lookup, ORM", pk_times),
        ("pk lookup, raw SQL", raw_pk_times),
        ("api_key_authenticate", auth_times),
    )
    for name, times in rows:
        print(
            f"{name:<22}{micro(percentile(times, 0.5)):>10}{micro(percentile(times, 0.99)):>10}"
            f"{micro(statistics.fmean(times)):>10}"
        )
    ratio = percentile(auth_times, 0.5) / percentile(pk_times, 0.5)
    raw_ratio = percentile(auth_times, 0.5) / percentile(raw_pk_times, 0.5)
    common.report(
        "authenticate",
        {
            name: {"p50_us": percentile(times, 0.5) * 1e6, "p99_us": percentile(times, 0.99) * 1e6}
            for name, times in rows
        },
        [common.goal("authenticate p50 ÷ an ORM primary-key lookup", ratio, 2, at_most=True)],
        f"authenticate p50 is {ratio:.2f}x an ORM primary-key lookup and "
        f"{raw_ratio:.2f}x a raw-SQL one (target <= 2x)",
    )


if __name__ == "__main__":
    main()
