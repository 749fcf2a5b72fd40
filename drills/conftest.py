"""The drills' harness (`make drills`): the site under uvicorn and a Celery worker in
subprocesses, on a database and a Redis database of the drills' own, a load generator, and
funded accounts made through the services.

Run with `make drills`, i.e. `pytest drills -p no:django`: this file sets Django up itself,
pointed at the drill database (pytest-django would set it up earlier, on DATABASE_URL's own
database, and block every query outside its fixtures).

Environment (everything is parametrised here, so a drill may point a helper elsewhere):
- DATABASE_URL (postgres://...): the server on which the drills create their own database,
  `drill_<pid>` (or DRILL_DATABASE_NAME), copied from DATABASE_TEST_TEMPLATE when set (a
  UTF-8 template, see NOTES.md) or else from template0 in C.UTF-8, migrated, and dropped at
  the end (DRILL_KEEP_DATABASE=1 keeps it for a post-mortem). The URL's own database is
  only used to create and drop that one.
- REDIS_URL (redis://host:port/N): database N belongs to the drills. It is emptied at the
  start and at the end (broker queues, limits, slots, reservations); .ci/run gives the
  drills a number the suite does not use.
- CI=true: a missing or unreachable PostgreSQL or Redis fails the drills with the reason;
  elsewhere those drills are skipped with the reason.

Fixtures and helpers (import helpers with `from drills.conftest import ...`):
- `drill_database` (session) -> DrillDatabase(name, url): created and migrated once.
- `drill_redis` (session) -> a redis client on REDIS_URL's database, emptied.
- `drill_environment` -> the environment of a server or worker subprocess (a function:
  `drill_environment(**overrides)`), on the drill database and Redis.
- `start_site` -> `start_site(workers=2, **env) -> Site`: `uvicorn --workers N` in a
  subprocess; `Site.worker_pids()`, `kill_worker()`, `wait_for_workers()`. uvicorn's
  multiprocess supervisor (0.30 and later; 0.54 here) replaces a worker that died, which
  the web drill checks. Stopped at the test's end.
- `start_worker` -> `start_worker(**env) -> Worker`: `celery worker --pool=prefork
  --concurrency=2` through drills/worker_app.py (the project's app plus a journal of task
  runs and an optional pause after a task). `Worker.main_pid`, `pool_pids()`,
  `journal`. Stopped at the test's end.
- `drill_accounts(count, keys_per_account=2, ...)` -> funded accounts on the Enterprise tier
  (no starter pack: every success is a charge), each key in its own project.
- `Load(base, plan, concurrency=16)`: asyncio + httpx, one `Result` per planned request
  (outcome "ok", "refused" or "broken", HTTP status, x-request-id, BigModel code); each
  request carries a client `request_id` so its usage record is found even when the client
  never saw the server's id.
- `report(line)`: figures printed under "drill figures" at the end of the run.
- `children(pid)`, `alive(pid)`, `wait_until(predicate, timeout, what)`.

Every process is started by this harness and stopped by its own pid; a SIGTERM (the
Makefile's `timeout`) becomes KeyboardInterrupt, so teardown still stops them and drops the
database.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from drills.private_services import free_port
from tests.processes import uvicorn_command

logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns a report

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() == "true"
DATABASE_URL = os.environ.get("DATABASE_URL", "")
REDIS_URL = os.environ.get("REDIS_URL", "")
DRILL_DATABASE = os.environ.get("DRILL_DATABASE_NAME") or f"drill_{os.getpid()}"
GATEWAY_PATH = "/api/paas/v4/chat/completions"
MODEL = "glm-4.7"
STATIC_STORAGE = "django.contrib.staticfiles.storage.StaticFilesStorage"

# --- Django, on the drill database -----------------------------------------------------------

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
import django  # noqa: E402
from django.conf import settings  # noqa: E402

if "pytest_django" in sys.modules and settings.configured:
    raise pytest.UsageError(
        "run the drills with `make drills` (pytest drills -p no:django): the harness sets "
        "Django up on a database of its own, which pytest-django would not let it use"
    )
django.setup()
if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Before any connection exists: the test process works on the drill database too.
    settings.DATABASES["default"]["NAME"] = DRILL_DATABASE


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def missing_services() -> str | None:
    """Why the drills cannot run here, or None."""
    if not DATABASE_URL.startswith(("postgres://", "postgresql://")):
        return "the drills need PostgreSQL: set DATABASE_URL=postgres://... (make drills in CI)"
    if not REDIS_URL.startswith("redis://"):
        return "the drills need Redis: set REDIS_URL=redis://127.0.0.1:6379/14"
    import psycopg
    import redis

    try:
        psycopg.connect(DATABASE_URL, connect_timeout=5).close()
    except psycopg.Error as error:
        return f"PostgreSQL at DATABASE_URL does not answer: {error}"
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=5).ping()
    except redis.RedisError as error:
        return f"Redis at REDIS_URL does not answer: {error}"
    return None


def _unavailable(reason: str):
    if IN_CI:
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


# --- pytest hooks ----------------------------------------------------------------------------

FIGURES: list[str] = []


def _interrupt(_signum, _frame):
    raise KeyboardInterrupt("SIGTERM")


def pytest_addoption(parser):
    # pyproject's pytest-django setting, unused here (-p no:django): declared, so not warned of.
    parser.addini("DJANGO_SETTINGS_MODULE", "read by pytest-django in the suite, not here")


def pytest_configure(config):
    # The Makefile bounds the run with `timeout`: its SIGTERM must still run the teardown
    # that stops the servers and drops the drill database.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("drill figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture
def report(request):
    """`report(text)`: one line of a drill's figures, printed at the end of the run."""

    def _report(text: str) -> None:
        FIGURES.append(f"{request.node.name}: {text}")

    return _report


# --- Small process helpers -------------------------------------------------------------------


def alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def children(pid: int) -> list[int]:
    """Live child processes of `pid` (from /proc: no psutil here)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            found.append(int(entry))
    return sorted(found)


def command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def wait_until(predicate: Callable[[], object], *, timeout: float, what: str, every=0.1):
    """The predicate's first truthy value; fails the drill with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}", pytrace=False)
        time.sleep(every)


def _stop(process: subprocess.Popen, extra_pids=(), timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL: the process, then any of its known children left over."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)
    for pid in extra_pids:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _tail(path: Path, size: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return ""


# --- The drill database and Redis ------------------------------------------------------------


@dataclass(frozen=True)
class DrillDatabase:
    name: str
    url: str


def database_create(server_url: str, name: str, template: str = "") -> str:
    """A new database on `server_url`'s server, owned by its role; returns its URL."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
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
    return _with_database(server_url, name)


def database_drop(server_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def drill_database():
    reason = missing_services()
    if reason:
        _unavailable(reason)
    from django.core.management import call_command
    from django.db import connections

    url = database_create(
        DATABASE_URL, DRILL_DATABASE, os.environ.get("DATABASE_TEST_TEMPLATE", "")
    )
    try:
        call_command("migrate", interactive=False, verbosity=0)
        yield DrillDatabase(DRILL_DATABASE, url)
    finally:
        connections.close_all()
        with contextlib.suppress(Exception):
            connections["default"].close_pool()
        if not os.environ.get("DRILL_KEEP_DATABASE"):
            database_drop(DATABASE_URL, DRILL_DATABASE)


@pytest.fixture(scope="session")
def drill_redis():
    reason = missing_services()
    if reason:
        _unavailable(reason)
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    from console.shared_state import shared_state

    shared_state.cache_clear()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def drill_environment(drill_database, drill_redis):
    """`drill_environment(**overrides)`: the environment of a server or worker process."""

    def make(**overrides) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": drill_database.url,
            "REDIS_URL": REDIS_URL,
            "CELERY_BROKER_URL": REDIS_URL,
            "SHARED_STATE_BACKEND": "redis",
            "DATABASE_POOL_MAX_SIZE": "20",
            "STATICFILES_BACKEND": STATIC_STORAGE,
            "PYTHONUNBUFFERED": "1",
            **{key: str(value) for key, value in overrides.items()},
        }

    return make


# --- The site under uvicorn ------------------------------------------------------------------


class Site:
    """`uvicorn --workers N` in a subprocess (a file for its output, never a pipe nobody
    reads: a full pipe stalls the server)."""

    def __init__(self, environment: dict[str, str], log_path: Path, workers: int = 2):
        self.environment, self.log_path, self.workers = environment, log_path, workers
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.seen_workers: set[int] = set()

    def start(self, timeout: float = 90) -> Site:
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(  # noqa: S603
                uvicorn_command(
                    self.port, workers=self.workers, extra=["--timeout-graceful-shutdown", "5"]
                ),
                cwd=ROOT,
                env=self.environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.wait_for_workers(timeout=timeout)
        return self

    def worker_pids(self) -> list[int]:
        """The supervisor's worker processes (spawned; not its resource tracker)."""
        pids = [pid for pid in children(self.process.pid) if "spawn_main" in command_line(pid)]
        self.seen_workers.update(pids)
        return pids

    def healthy(self) -> bool:
        import httpx

        try:
            return httpx.get(self.base + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_for_workers(self, *, excluding=(), timeout: float = 90) -> list[int]:
        """All N workers serving (none of `excluding`): each has loaded the application and
        logged its start, and the site answers."""

        def ready():
            assert self.process.poll() is None, "uvicorn exited:\n" + self.log()
            pids = [pid for pid in self.worker_pids() if pid not in excluding]
            if len(pids) != self.workers:
                return None
            log = self.log_path.read_text(errors="replace")
            started = all(f"Started server process [{pid}]" in log for pid in pids)
            return pids if started and self.healthy() else None

        return wait_until(ready, timeout=timeout, what=f"{self.workers} uvicorn workers")

    def connections(self, pid: int) -> int:
        """Client connections the worker `pid` has open (they share one listening socket,
        and the kernel hands each new connection to whichever worker accepts first)."""
        established = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(FileNotFoundError), open(table) as handle:
                for line in handle.readlines()[1:]:
                    fields = line.split()
                    port = int(fields[1].rsplit(":", 1)[1], 16)
                    if port == self.port and fields[3] == "01":  # 01: ESTABLISHED
                        established.add(fields[9])
        sockets = set()
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("socket:["):
                        sockets.add(target[8:-1])
        return len(sockets & established)

    def busiest_worker(self) -> tuple[int, int]:
        """(pid, open client connections) of the worker serving the most clients now."""
        return max(((pid, self.connections(pid)) for pid in self.worker_pids()), key=lambda x: x[1])

    def kill_worker(self, pid: int | None = None) -> int:
        pid = pid or self.busiest_worker()[0]
        os.kill(pid, signal.SIGKILL)
        return pid

    def log(self) -> str:
        return _tail(self.log_path)

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process, extra_pids=sorted(self.seen_workers))


@pytest.fixture
def start_site(drill_environment, tmp_path):
    """`start_site(workers=2, **env) -> Site`, stopped when the test ends."""
    sites: list[Site] = []

    def start(workers: int = 2, **overrides) -> Site:
        site = Site(drill_environment(**overrides), tmp_path / f"uvicorn-{len(sites)}.log", workers)
        sites.append(site)
        return site.start()

    yield start
    for site in sites:
        site.stop()


# --- The Celery worker -----------------------------------------------------------------------


class Journal:
    """The worker's journal of task runs (drills/worker_app.py), one JSON object a line."""

    def __init__(self, path: Path):
        self.path = path

    def events(self, **match) -> list[dict]:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        events = [json.loads(line) for line in lines if line.strip()]
        return [e for e in events if all(e.get(k) == v for k, v in match.items())]

    def wait_for(self, *, count: int = 1, timeout: float = 60, **match) -> list[dict]:
        return wait_until(
            lambda: (found := self.events(**match)) and len(found) >= count and found,
            timeout=timeout,
            what=f"{count} journal event(s) {match}",
        )


class Worker:
    """`celery worker --pool=prefork` in a subprocess, through drills/worker_app.py."""

    def __init__(
        self,
        environment: dict[str, str],
        log_path: Path,
        journal: Journal,
        name: str,
        concurrency: int = 2,
    ):
        self.environment, self.log_path, self.journal = environment, log_path, journal
        self.name, self.concurrency = name, concurrency
        self.process: subprocess.Popen | None = None
        self.seen_children: set[int] = set()

    @property
    def main_pid(self) -> int:
        return self.process.pid

    def start(self, timeout: float = 90) -> Worker:
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(  # noqa: S603
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "drills.worker_app",
                    "worker",
                    "--pool=prefork",
                    f"--concurrency={self.concurrency}",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "--loglevel=INFO",
                    "-n",
                    f"{self.name}@%h",
                ],
                cwd=ROOT,
                env=self.environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def ready():
            assert self.process.poll() is None, "the Celery worker exited:\n" + self.log()
            return "ready." in self.log() and len(self.pool_pids()) == self.concurrency

        wait_until(ready, timeout=timeout, what=f"Celery worker {self.name}")
        return self

    def pool_pids(self) -> list[int]:
        pids = children(self.process.pid) if self.process.poll() is None else []
        self.seen_children.update(pids)
        return pids

    def log(self) -> str:
        return _tail(self.log_path, 8000)

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process, extra_pids=sorted(self.seen_children))


@pytest.fixture
def worker_control(tmp_path) -> Path:
    """Where a drill leaves pause files for its workers (drills/worker_app.py)."""
    path = tmp_path / "worker-control"
    path.mkdir()
    return path


@pytest.fixture
def start_worker(drill_environment, tmp_path, worker_control):
    """`start_worker(**env) -> Worker`: each worker of a test shares one journal."""
    workers: list[Worker] = []
    journal = Journal(tmp_path / "journal.jsonl")

    def start(**overrides) -> Worker:
        name = f"drill{len(workers) + 1}"
        environment = drill_environment(
            DRILL_JOURNAL=journal.path, DRILL_CONTROL_DIR=worker_control, **overrides
        )
        worker = Worker(environment, tmp_path / f"{name}.log", journal, name)
        workers.append(worker)
        return worker.start()

    yield start
    for worker in workers:
        worker.stop()


# --- Accounts, through the services ----------------------------------------------------------

_accounts_made = itertools.count(1)


@dataclass(frozen=True)
class DrillKey:
    raw: str
    key_id: int
    account_id: int
    project_id: int


@dataclass
class DrillAccount:
    id: int
    keys: list[DrillKey]
    funded_nano: int  # recharge + bonus put in; the wallet moves by what is charged


def drill_accounts(
    count: int, *, keys_per_account: int = 2, recharge_units: int = 1_000, bonus_units: int = 100
) -> list[DrillAccount]:
    """Accounts without the starter pack (so each success is one charge), funded in cash and
    gift credit (the proportional split is exercised), on the Enterprise tier (limits far
    above a drill's load), one key per project."""
    from billing.services import bonus_grant, recharge
    from console.models import Tier
    from console.money import NANO_PER_UNIT
    from console.services import account_set_tier
    from keys.services import api_key_create
    from portal.services import user_signup
    from projects.services import project_create

    made = []
    enterprise = Tier.objects.get(slug="enterprise")
    for _ in range(count):
        number = next(_accounts_made)
        _user, account = user_signup(
            email=f"drill-{os.getpid()}-{number}@example.com",
            password="drill-password-123456",
            name="",
            account_name=f"drill {number}",
            currency="CNY",
            email_verified=True,
            starter_pack=False,
        )
        if recharge_units:
            recharge(
                account=account,
                amount_nano=recharge_units * NANO_PER_UNIT,
                reference=f"drill-{account.pk}",
            )
        if bonus_units:
            bonus_grant(
                account=account,
                amount_nano=bonus_units * NANO_PER_UNIT,
                reference=f"drill-gift-{account.pk}",
            )
        account_set_tier(account=account, tier=enterprise, pinned=True)
        keys = []
        for index in range(keys_per_account):
            project = (
                account.projects.get(is_default=True)
                if index == 0
                else project_create(account=account, name=f"drill project {index}")
            )
            created = api_key_create(account=account, project=project, label="drill", actor=None)
            keys.append(DrillKey(created.raw, created.key.pk, account.pk, project.pk))
        made.append(DrillAccount(account.pk, keys, (recharge_units + bonus_units) * NANO_PER_UNIT))
    return made


# --- Load ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    index: int
    key: DrillKey
    stream: bool
    output_tokens: int
    client_request_id: str
    include_usage: bool = False
    first_token_ms: int = 30
    chunk_ms: int = 4

    def body(self) -> dict:
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": f"drill {self.index}: 你好，智谱"}],
            "max_tokens": self.output_tokens,
            "request_id": self.client_request_id,
            "simulator": {
                "first_token_ms": self.first_token_ms,
                "chunk_ms": self.chunk_ms,
                "output_tokens": self.output_tokens,
            },
        }
        if self.stream:
            body["stream"] = True
            if self.include_usage:
                body["stream_options"] = {"include_usage": True}
        return body


def mixed_plan(keys: list[DrillKey], count: int, *, tag: str) -> list[Planned]:
    """Half streams (half of those asking for the usage chunk), keys in turn, varied sizes."""
    return [
        Planned(
            index=index,
            key=keys[index % len(keys)],
            stream=index % 2 == 1,
            include_usage=index % 4 == 1,
            output_tokens=20 + index % 31,
            client_request_id=f"{tag}-{index}",
        )
        for index in range(count)
    ]


@dataclass
class Result:
    planned: Planned
    started: float
    finished: float = 0.0
    status: int | None = None  # None: no response headers came back
    request_id: str | None = None  # the server's x-request-id, when headers came back
    outcome: str = "broken"  # "ok", "refused" (an error answer) or "broken" (cut off)
    code: str = ""
    detail: str = ""


class Load:
    """Sends a plan at a fixed concurrency from a thread of its own (asyncio + httpx), so
    the drill can act (kill a process) while it runs."""

    def __init__(
        self,
        base: str,
        plan: list[Planned],
        *,
        concurrency: int = 16,
        timeout: float = 60,
        stop_after: float | None = None,
    ):
        """`stop_after` seconds: send no new request after that (the plan is an upper bound)."""
        self.base, self.plan, self.concurrency, self.timeout = base, plan, concurrency, timeout
        self.stop_after = stop_after
        self.results: list[Result] = []
        self.in_flight = 0
        self.started_at = self.finished_at = 0.0
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    @property
    def done(self) -> int:
        return len(self.results)

    @property
    def seconds(self) -> float:
        return (self.finished_at or time.monotonic()) - self.started_at

    def start(self) -> Load:
        self.started_at = time.monotonic()
        self._thread.start()
        return self

    def wait_for(self, done: int, timeout: float = 120) -> None:
        wait_until(lambda: self.done >= done, timeout=timeout, what=f"{done} answers", every=0.02)

    def join(self, timeout: float = 300) -> list[Result]:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the load did not end within {timeout}s"
        if self.stop_after is None:
            assert len(self.results) == len(self.plan), "the load lost track of requests"
        return self.results

    async def _main(self) -> None:
        import httpx

        queue = iter(self.plan)
        limits = httpx.Limits(
            max_connections=self.concurrency, max_keepalive_connections=self.concurrency
        )
        async with httpx.AsyncClient(
            base_url=self.base, timeout=self.timeout, limits=limits
        ) as client:

            async def sender():
                for planned in queue:
                    if self.stop_after and time.monotonic() - self.started_at > self.stop_after:
                        return
                    self.in_flight += 1
                    try:
                        self.results.append(await self._one(client, planned))
                    finally:
                        self.in_flight -= 1

            await asyncio.gather(*(sender() for _ in range(self.concurrency)))
        self.finished_at = time.monotonic()

    async def _one(self, client, planned: Planned) -> Result:
        import httpx

        result = Result(planned, started=time.monotonic())
        headers = {"Authorization": f"Bearer {planned.key.raw}"}
        try:
            async with client.stream(
                "POST", GATEWAY_PATH, json=planned.body(), headers=headers
            ) as response:
                result.status = response.status_code
                result.request_id = response.headers.get("x-request-id")
                if response.status_code != 200:
                    body = json.loads(await response.aread())
                    result.outcome, result.code = "refused", str(body["error"]["code"])
                elif planned.stream:
                    last = ""
                    async for line in response.aiter_lines():
                        if not line.startswith("data: "):
                            continue
                        last = line[6:]
                        if last != "[DONE]" and "error" in json.loads(last):
                            result.outcome = "refused"
                            result.code = str(json.loads(last)["error"]["code"])
                    if last == "[DONE]" and result.outcome != "refused":
                        result.outcome = "ok"
                    elif result.outcome != "refused":
                        result.detail = "stream ended without [DONE]"
                else:
                    body = json.loads(await response.aread())
                    # A whole answer, or the drill counts it as wrong (never as success).
                    whole = body["usage"]["completion_tokens"] == planned.output_tokens
                    result.outcome = "ok" if whole else "wrong"
        except (httpx.HTTPError, ValueError, KeyError) as error:
            result.outcome, result.detail = "broken", f"{type(error).__name__}: {error}"
        result.finished = time.monotonic()
        return result


def outcome_counts(results: list[Result]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for result in results:
        counts[result.outcome] = counts.get(result.outcome, 0) + 1
    return counts
