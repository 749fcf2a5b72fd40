"""Charges per second on one hot account, at 8 and 32 clients, beside pgbench on the same
PostgreSQL in the same run: a single-row UPDATE, and a script of exactly the statements one
charge runs. The script is not written by hand: the benchmark records the SQL of one real
`charge_usage` (values inlined, the request id made unique per transaction) and points it at
copies of the tables it touches (`CREATE TABLE bench_... (LIKE billing_... INCLUDING ALL)`,
rows copied), so it stays the same statements, in the same order, on the same table shapes
as the code. Headline (printed last): charge_usage as a share of the pgbench script.

Each client is a separate process (Python threads would measure the GIL). The benchmark
creates its own account (and leaves it: point DATABASE_URL at a scratch database) and its
own scratch tables for pgbench, dropped at the end; it ends with the ledger audit.

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
from bench import common

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
SECONDS = common.seconds(full=8, quick=3)
CLIENTS = [8, 32]

UPDATE_SCRIPT = "UPDATE bench_wallet SET recharge = recharge - 1 WHERE id = 1;\n"
UPDATE_SETUP_SQL = """
DROP TABLE IF EXISTS bench_wallet;
CREATE TABLE bench_wallet (id int PRIMARY KEY, recharge bigint, bonus bigint, arrears bigint);
INSERT INTO bench_wallet VALUES (1, 1000000000000000, 1000000000000000, 0);
"""
SCRIPT_REQUEST_ID = "bench-script-request-id"
# Each pgbench transaction needs a request id of its own (an existing one is a replay).
REQUEST_ID_SQL = "('r' || :r)"


def record_charge_script(account, project) -> tuple[str, list[str]]:
    """One real charge's statements as a pgbench script on copies of their tables; returns
    (script, the billing tables it touches)."""
    import re

    from django.db import connection

    from gateway.settlement import charge_usage

    statements = []

    def record(execute, sql, params, many, context):
        statements.append(connection.ops.compose_sql(sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        charge_usage(
            account=account,
            model="glm-4.7",
            input_tokens=1_200,
            output_tokens=300,
            request_id=SCRIPT_REQUEST_ID,
            project=project,
        )
    tables = sorted(set(re.findall(r"\bbilling_\w+", " ".join(statements))))
    lines = ["\\set r random(1, 2000000000)", "BEGIN;"]
    for statement in statements:
        statement = re.sub(r"\bbilling_(\w+)", r"bench_\1", " ".join(statement.split()))
        lines.append(statement.replace(f"'{SCRIPT_REQUEST_ID}'", REQUEST_ID_SQL) + ";")
    lines.append("COMMIT;")
    return "\n".join(lines) + "\n", tables


def copy_tables_sql(tables: list[str]) -> str:
    # The names come from the recorded SQL's own table names (billing_...), not from input.
    return "".join(
        f"DROP TABLE IF EXISTS bench_{name[8:]};"  # noqa: S608
        f" CREATE TABLE bench_{name[8:]} (LIKE {name} INCLUDING ALL);"
        f" INSERT INTO bench_{name[8:]} SELECT * FROM {name};"
        for name in tables
    )


def drop_tables_sql(tables: list[str]) -> str:
    names = ", ".join(["bench_wallet", *(f"bench_{name[8:]}" for name in tables)])
    return f"DROP TABLE IF EXISTS {names}"


def _django():
    import django

    django.setup()


def _worker(account_id, project_id, seconds, prefix, queue, ready, start) -> None:
    _django()
    from django.db import connection

    from console.models import Account
    from gateway.settlement import charge_usage
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


def pgbench(script: str, clients: int, url, *, prepared: bool = False) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as handle:
        handle.write(script)
    env = {**os.environ, "PGPASSWORD": url.password or ""}
    result = subprocess.run(
        [
            "pgbench",
            "-n",
            *(["-M", "prepared"] if prepared else []),
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

    from billing.services import recharge
    from console.money import NANO_PER_UNIT
    from portal.services import user_signup

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
    script, tables = record_charge_script(account, project)
    from django.db import connection

    connection.close()
    print("pgbench charge script (one charge_usage, recorded):")
    print(script)
    rows = []
    try:
        for clients in CLIENTS:
            ours = charges_per_second(clients, account.pk, project.pk)
            psql(UPDATE_SETUP_SQL, url)
            update = pgbench(UPDATE_SCRIPT, clients, url)
            # Copied after our run, so the script sees the tables as large as we left them.
            psql(copy_tables_sql(tables), url)
            # Prepared, as charge_usage prepares its statements (billing.writes.cursor).
            charge_script = pgbench(script, clients, url, prepared=True)
            rows.append((clients, ours, update, charge_script))
    finally:
        psql(drop_tables_sql(tables), url)
    call_command("billing_audit")
    print(
        f"{'clients':>7} {'charge_usage/s':>15} {'pgbench UPDATE tps':>19} "
        f"{'pgbench charge-script tps':>26} {'vs script':>10}"
    )
    for clients, ours, update, charge_script in rows:
        print(
            f"{clients:>7} {ours:>15,.0f} {update:>19,.0f} {charge_script:>26,.0f}"
            f" {ours / charge_script:>10.2f}"
        )
    best = max(rows, key=lambda row: row[1])
    common.report(
        "charge",
        {
            "seconds": SECONDS,
            "rows": [
                {
                    "clients": c,
                    "charges_per_second": o,
                    "pgbench_update_tps": u,
                    "pgbench_script_tps": p,
                }
                for c, o, u, p in rows
            ],
            "pgbench_script": script,
            "billing_audit": "clean",
        },
        [
            common.goal(
                f"charge_usage ÷ the pgbench script at {c} clients", o / p, 0.5, at_most=False
            )
            for c, o, _u, p in rows
        ],
        f"charge_usage reaches {best[1]:,.0f} charges/s on one account "
        f"({best[1] / best[3]:.2f}x the same statements through pgbench, "
        f"{best[1] / best[2]:.2f}x a bare single-row UPDATE) at {best[0]} clients",
    )


if __name__ == "__main__":
    main()
