"""An upgrade from the schema of commit 7ff7319 loses no row.

The dump beside this file (README.md says how it was made) is a database migrated at
7ff7319, filled by `seed_demo` and four real gateway calls. It is loaded into a scratch
database of its own on DATABASE_URL's server (never pytest-django's test database), migrated
to today's code by `manage.py migrate` alone, and must then pass `billing_audit`, need no new
migration, and show every fact (balances, keys, history, usage, ledger, packs) as the dump
had it.

The test uses no `db` fixture: the Django connection of this process is never opened, every
Django step runs in a subprocess on the scratch database, so the suite's after-test
billing_audit (tests/conftest.py, which runs for tests on the test database) leaves it alone.
"""

import gzip
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.conftest import requires_postgres
from tests.upgrade.facts import COLUMNS, reduce

pytestmark = requires_postgres

ROOT = Path(__file__).resolve().parents[2]
DUMP = Path(__file__).with_name("console-7ff7319.sql.gz")

# Fact -> its table in the dump (as at 7ff7319; the restructuring keeps table names).
DUMP_TABLES = {
    "wallets": "billing_wallet",
    "api_keys": "keys_apikey",
    "prompt_logs": "history_promptlog",
    "usage_records": "billing_usagerecord",
    "usage_daily": "billing_usagedaily",
    "usage_hourly": "billing_usagehourly",
    "ledger": "billing_ledgerentry",
    "resource_packs": "billing_resourcepack",
    "pack_consumptions": "billing_packconsumption",
    "account_month_spend": "billing_accountmonthspend",
    "project_month_spend": "billing_projectmonthspend",
}


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def _admin_connection(server_url: str):
    """A connection to the server for CREATE/DROP DATABASE: its `postgres` database, else
    DATABASE_URL's own (a role may be refused the maintenance database)."""
    import psycopg

    try:
        return psycopg.connect(
            _with_database(server_url, "postgres"), autocommit=True, connect_timeout=10
        )
    except psycopg.OperationalError:
        return psycopg.connect(server_url, autocommit=True, connect_timeout=10)


@pytest.fixture
def scratch_database():
    """A new database loaded from the dump; its URL. Dropped afterwards, whatever happened."""
    import psycopg
    from psycopg import sql

    server_url = os.environ["DATABASE_URL"]
    name = f"console_upgrade_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    template = os.environ.get("DATABASE_TEST_TEMPLATE", "")
    with _admin_connection(server_url) as admin:
        if template:
            statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        else:
            statement = sql.SQL(
                "CREATE DATABASE {} ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8' "
                "TEMPLATE template0"
            ).format(sql.Identifier(name))
        admin.execute(statement)
    url = _with_database(server_url, name)
    try:
        # A COMMENT ON EXTENSION needs the extension's owner, which a template's pg_trgm may
        # not be for a role without superuser (CI's): cosmetic, left out. No COPY: --inserts.
        with gzip.open(DUMP, "rt", encoding="utf-8") as dump:
            text = "".join(line for line in dump if not line.startswith("COMMENT ON EXTENSION"))
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as loader:
            loader.execute(text)  # no parameters: the simple protocol, many statements
        yield url
    finally:
        with _admin_connection(server_url) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def facts_before(url: str) -> dict:
    """Every fact from the dump's tables, with SQL."""
    import psycopg
    from psycopg import sql

    facts = {}
    with psycopg.connect(url, connect_timeout=10) as connection:
        for fact, table in DUMP_TABLES.items():
            query = sql.SQL("SELECT {} FROM public.{}").format(
                sql.SQL(", ").join(map(sql.Identifier, COLUMNS[fact])), sql.Identifier(table)
            )
            facts[fact] = reduce(fact, connection.execute(query).fetchall())
    return facts


def manage(url: str, *args: str) -> subprocess.CompletedProcess:
    """`manage.py ARGS` in a subprocess on the database at `url` (the settings module is the
    one manage.py or the environment names)."""
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=180,
    )


def succeeded(result: subprocess.CompletedProcess) -> bool:
    return result.returncode == 0


def told(result: subprocess.CompletedProcess) -> str:
    command = " ".join(result.args[2:])
    return (
        f"`manage.py {command}` exited {result.returncode}\n"
        f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
    )


def differences(before, after, path: str, limit: int = 5) -> list[str]:
    """What differs between two JSON values, by path (at most `limit` lines per mapping)."""
    if before == after:
        return []
    if not (isinstance(before, dict) and isinstance(after, dict)):
        return [f"{path}: before {before!r}, after {after!r}"]
    lines = []
    lost = [key for key in before if key not in after]
    new = [key for key in after if key not in before]
    if lost:
        lines.append(f"{path}: {len(lost)} lost, e.g. {lost[:limit]}")
    if new:
        lines.append(f"{path}: {len(new)} not in the dump, e.g. {new[:limit]}")
    changed = [key for key in before if key in after and before[key] != after[key]]
    for key in changed[:limit]:
        lines += differences(before[key], after[key], f"{path} / {key}", limit)
    if len(changed) > limit:
        lines.append(f"{path}: {len(changed) - limit} more changed")
    return lines


def test_upgrade_from_7ff7319_keeps_every_row(scratch_database):
    assert DUMP_TABLES.keys() == COLUMNS.keys(), "facts.py and the dump's tables disagree"
    before = facts_before(scratch_database)
    empty = [fact for fact, value in before.items() if not value]
    assert not empty, f"the dump has no rows for {empty}: the comparison would prove nothing"

    migrate = manage(scratch_database, "migrate", "--noinput", "-v0")
    assert succeeded(migrate), told(migrate)

    audit = manage(scratch_database, "billing_audit")
    assert succeeded(audit), "billing_audit fails after the upgrade: " + told(audit)

    read = manage(
        scratch_database,
        "shell",
        "--no-imports",
        "-v0",
        "-c",
        "from tests.upgrade.facts import print_after; print_after()",
    )
    assert succeeded(read), told(read)
    after = json.loads(read.stdout.strip().splitlines()[-1])

    pending = manage(scratch_database, "makemigrations", "--check", "--dry-run")
    assert succeeded(pending), "models and migrations disagree: " + told(pending)

    lost = []
    for fact in before:
        if fact not in after:
            lost.append(f"{fact}: not read after the upgrade")
        else:
            lost += differences(before[fact], after[fact], fact)
    assert not lost, "the upgrade from 7ff7319 changed what the dump had:\n" + "\n".join(lost)
