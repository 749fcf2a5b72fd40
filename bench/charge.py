"""Charges per second on one hot account, at 8 and 32 clients, beside pgbench on the same
PostgreSQL in the same run: a single-row UPDATE, and a script of the statements one charge
runs (lock the wallet, look up the request id, lock the packs, insert the entry, update the
wallet and the two month counters). Headline (printed last): charge_usage as a share of the
pgbench script.

Each client is a separate process (Python threads would measure the GIL). The benchmark
creates its own account (and leaves it: point DATABASE_URL at a scratch database) and its
own scratch tables for pgbench, dropped at the end.

    DATABASE_URL=postgres://user:pass@127.0.0.1:5432/scratch .venv/bin/python bench/charge.py
"""

import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
SECONDS = float(os.environ.get("BENCH_SECONDS", "8"))
CLIENTS = [8, 32]

UPDATE_SCRIPT = "UPDATE bench_wallet SET recharge = recharge - 1 WHERE id = 1;\n"
CHARGE_SCRIPT = """\\set r random(1, 2000000000)
BEGIN;
SELECT recharge, bonus, arrears FROM bench_wallet WHERE id = 1 FOR UPDATE;
SELECT id FROM bench_ledger WHERE account_id = 1 AND request_id = 'r' || :r;
SELECT id, remaining FROM bench_pack WHERE account_id = 1 AND remaining > 0 FOR UPDATE;
INSERT INTO bench_ledger (account_id, request_id, fee, created_at) VALUES (1, 'r' || :r, 7, now());
UPDATE bench_wallet SET recharge = recharge - 6, bonus = bonus - 1 WHERE id = 1;
UPDATE bench_spend SET spent = spent + 7 WHERE id = 1;
UPDATE bench_spend SET spent = spent + 7 WHERE id = 2;
COMMIT;
"""
SETUP_SQL = """
DROP TABLE IF EXISTS bench_wallet, bench_ledger, bench_pack, bench_spend;
CREATE TABLE bench_wallet (id int PRIMARY KEY, recharge bigint, bonus bigint, arrears bigint);
INSERT INTO bench_wallet VALUES (1, 1000000000000000, 1000000000000000, 0);
CREATE TABLE bench_ledger (id bigserial PRIMARY KEY, account_id int, request_id text,
  fee bigint, created_at timestamptz);
CREATE INDEX ON bench_ledger (account_id, request_id);
CREATE TABLE bench_pack (id int PRIMARY KEY, account_id int, remaining bigint);
CREATE TABLE bench_spend (id int PRIMARY KEY, spent bigint);
INSERT INTO bench_spend VALUES (1, 0), (2, 0);
"""


def _django():
    import django

    django.setup()


def _worker(account_id, project_id, seconds, prefix, queue, ready, start) -> None:
    _django()
    from django.db import connection

    from billing.services import charge_usage
    from console.models import Account
    from projects.models import Project

    account = Account.objects.get(pk=account_id)
    project = Project.objects.get(pk=project_id)
    # Every client loads Django first; the clock starts when all are ready.
    ready.release()
    start.wait()
    done, stop = 0, time.perf_counter() + seconds
    while time.perf_counter() < stop:
        charge_usage(
            account=account,
            model="glm-4.7",
            input_tokens=1_200,
            output_tokens=300,
            request_id=f"{prefix}-{done}",
            project=project,
        )
        done += 1
    connection.close()
    queue.put(done)


def charges_per_second(clients: int, account_id: int, project_id: int) -> float:
    context = multiprocessing.get_context("spawn")
    queue, ready, start = context.Queue(), context.Semaphore(0), context.Event()
    run = f"b{time.time_ns()}"
    workers = [
        context.Process(
            target=_worker,
            args=(account_id, project_id, SECONDS, f"{run}-{i}", queue, ready, start),
        )
        for i in range(clients)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.acquire()
    start.set()
    total = sum(queue.get() for _ in workers)
    for worker in workers:
        worker.join()
    return total / SECONDS


def pgbench(script: str, clients: int, url) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as handle:
        handle.write(script)
    env = {**os.environ, "PGPASSWORD": url.password or ""}
    result = subprocess.run(
        [
            "pgbench",
            "-n",
            "-f",
            handle.name,
            "-c",
            str(clients),
            "-j",
            "2",
            "-T",
            str(int(SECONDS)),
            "-h",
            url.hostname or "127.0.0.1",
            "-p",
            str(url.port or 5432),
            "-U",
            url.username or "postgres",
            url.path.lstrip("/"),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    os.unlink(handle.name)
    line = next(line for line in result.stdout.splitlines() if line.startswith("tps"))
    return float(line.split("=")[1].split()[0])


def psql(sql: str, url) -> None:
    env = {**os.environ, "PGPASSWORD": url.password or ""}
    subprocess.run(
        [
            "psql",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            url.hostname or "127.0.0.1",
            "-p",
            str(url.port or 5432),
            "-U",
            url.username or "postgres",
            url.path.lstrip("/"),
            "-c",
            sql,
        ],
        env=env,
        check=True,
        capture_output=True,
    )


def main() -> None:
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith("postgres"):
        sys.exit("bench/charge.py needs DATABASE_URL=postgres://... (a scratch database)")
    url = urlparse(database_url)
    _django()
    from django.core.management import call_command

    from billing.money import NANO_PER_UNIT
    from billing.services import recharge
    from console.services import user_signup

    call_command("migrate", verbosity=0)
    _user, account = user_signup(
        email=f"bench-{time.time_ns()}@example.com",
        password="bench-password-123",
        name="",
        account_name="bench",
        currency="CNY",
        email_verified=True,
        starter_pack=False,
    )
    recharge(
        account=account,
        amount_nano=10**8 * NANO_PER_UNIT,
        reference="bench",
        bonus_nano=10**7 * NANO_PER_UNIT,
    )
    project = account.projects.get()
    from django.db import connection

    connection.close()
    psql(SETUP_SQL, url)
    rows = []
    try:
        for clients in CLIENTS:
            ours = charges_per_second(clients, account.pk, project.pk)
            update = pgbench(UPDATE_SCRIPT, clients, url)
            script = pgbench(CHARGE_SCRIPT, clients, url)
            rows.append((clients, ours, update, script))
    finally:
        psql("DROP TABLE IF EXISTS bench_wallet, bench_ledger, bench_pack, bench_spend", url)
    print(
        f"{'clients':>7} {'charge_usage/s':>15} {'pgbench UPDATE tps':>19} "
        f"{'pgbench charge-script tps':>26} {'vs script':>10}"
    )
    for clients, ours, update, script in rows:
        print(
            f"{clients:>7} {ours:>15,.0f} {update:>19,.0f} {script:>26,.0f} {ours / script:>10.2f}"
        )
    best = max(rows, key=lambda row: row[1])
    print(
        f"headline: charge_usage reaches {best[1]:,.0f} charges/s on one account "
        f"({best[1] / best[3]:.2f}x the same statements through pgbench, "
        f"{best[1] / best[2]:.2f}x a bare single-row UPDATE) at {best[0]} clients"
    )


if __name__ == "__main__":
    main()
