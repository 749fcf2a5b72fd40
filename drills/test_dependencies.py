"""Dependency drills (issue 12): PostgreSQL and, separately, Redis restarted under gateway
load, and a pending card payment whose confirmation task Redis lost.

Everything runs against a PRIVATE PostgreSQL cluster and a PRIVATE redis-server
(drills/private_services.py): the machine's shared ones (5432, 6379) are never stopped. The
site runs under uvicorn with two worker processes and a Celery worker runs beside it, both in
subprocesses pointed at the private services through the environment; neither is restarted
during a drill. The drill's own checks open fresh database connections (they reconnect).

What each drill asserts:
- while a dependency is down, every answer is a clear, documented error (BigModel's JSON
  body; 503 with 1241 for the database, 503 with 1240 for Redis), never a 500 page, and none
  takes longer than a bound;
- afterwards the gateway recovers by itself;
- every request the client saw succeed has exactly one usage record and one charge; no
  request has two; no request the client saw fail was charged; `billing_audit` is clean;
- concurrency slots and money reservations come back to zero;
- a pending payment whose confirmation task was lost with Redis's queue is settled once by
  the database sweep, and the wallet and ledger agree.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
import redis

from console.shared_state import concurrency_key, reservation_keys
from drills.private_services import (
    PrivatePostgres,
    PrivateRedis,
    ServiceError,
    free_port,
    missing_binaries,
)
from tests.processes import celery_worker_command, uvicorn_command

ROOT = Path(__file__).resolve().parents[1]
PATH = "/api/paas/v4/chat/completions"
MODEL = "glm-4.7"
CONCURRENCY = 8
# DATABASE_POOL_TIMEOUT's default: the longest a page or a job waits for a database
# connection; the API waits GATEWAY_DATABASE_WAIT's default instead, for every connection
# it makes, a stream's settlement included.
POOL_TIMEOUT_SECONDS = 10
API_WAIT_SECONDS = 3
# How long a dependency stays down while the load keeps running. A request waits up to the
# pool's timeout for a database connection, so PostgreSQL stays down longer than that (or
# every request would just wait the outage out), and long enough for the pool's reconnection
# backoff to matter: with psycopg's default reconnect_timeout a web process then kept waiting
# ~10 s after PostgreSQL was back (DATABASE_POOL_RECONNECT_TIMEOUT). Redis refusals are
# immediate.
POSTGRES_OUTAGE_SECONDS = 17
REDIS_OUTAGE_SECONDS = 5
# No answer, not even an error, may take longer than this: the API's wait plus slack for a
# loaded two-core machine, below the pool's 10 s, so an answer that waited the pool's wait
# (a reconnection outside the API's short wait) fails the drill.
ANSWER_BOUND_SECONDS = API_WAIT_SECONDS + 6
# After the dependency is back, the first success must come within this long...
RECOVERY_BOUND_SECONDS = 30
# ...and every request started this long after it is back must succeed, none slower than
# SLOW_SECONDS (successes take well under a second here).
RECOVERY_GRACE_SECONDS = 2
SLOW_SECONDS = 5
# Requests before the outage, and successes after recovery, per drill.
BEFORE, AFTER = 150, 150
# The last requests of a drill must all succeed (steady state restored).
TAIL = 100
STATE_PREFIX = "console:state:"
SANDBOX_PENDING_SECONDS = 8
# One line per request would drown a failure's report.
logging.getLogger("httpx").setLevel(logging.WARNING)


def _fail_without_binaries():
    missing = missing_binaries()
    if missing:
        pytest.fail(
            "the dependency drills run a private PostgreSQL cluster and redis-server (never "
            "the machine's shared services) and need their binaries; missing: "
            + ", ".join(missing)
            + ". Install postgresql postgresql-contrib redis-server (.ci/run does).",
            pytrace=False,
        )


# --- The stack: private services, the site under uvicorn, a Celery worker ---------------------


@dataclass
class Account:
    id: int
    project: int
    key: str


class Stack:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.pg = PrivatePostgres()
        self.redis = PrivateRedis()
        self.processes: dict[str, tuple[subprocess.Popen, Path]] = {}
        self.base = self.database_url = ""

    # environment shared by every process of the drill
    def environment(self) -> dict[str, str]:
        outer = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("DATABASE_", "REDIS_", "CELERY_", "SHARED_STATE_"))
        }
        return {
            **outer,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "CONSOLE_IGNORE_DOTENV": "1",
            "CONSOLE_VAR_DIR": str(self.tmp / "var"),
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis.url(0),
            "CELERY_BROKER_URL": self.redis.url(0),
            "SHARED_STATE_BACKEND": "redis",
            # One secret and pepper for every process: a key made by the set-up script
            # must authenticate in the server.
            "SECRET_KEY": "drill-secret-key-not-for-production-0123456789abcdefghij",
            "API_KEY_PEPPERS": "1:drill-pepper-0123456789abcdef",
            "STATICFILES_BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage",
            "SIMULATOR_FIRST_TOKEN_MS": "20",
            "SIMULATOR_CHUNK_MS": "1",
            # The pending card's confirmation runs SANDBOX_PENDING_SECONDS + 1 after the
            # payment starts: time for the payment drill to restart Redis before it does.
            "SANDBOX_PENDING_SECONDS": str(SANDBOX_PENDING_SECONDS),
            "PYTHONUNBUFFERED": "1",
        }

    def setup(self) -> None:
        self.pg.setup()
        self.database_url = self.pg.create_database("console_drill")
        self.redis.start()
        self.manage("migrate", "--noinput", "-v0", timeout=300)
        self._start_site()
        self._start_worker()

    def _spawn(self, name: str, command: list[str]) -> None:
        log_path = self.tmp / f"{name}.log"
        with log_path.open("w") as log:  # a file, not a pipe nobody reads
            process = subprocess.Popen(  # noqa: S603
                command,
                cwd=ROOT,
                env=self.environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        self.processes[name] = (process, log_path)

    def _start_site(self) -> None:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self._spawn("uvicorn", uvicorn_command(port, workers=2))
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(self.base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            self.assert_alive("uvicorn")
            assert time.monotonic() < deadline, "uvicorn did not start:\n" + self.log("uvicorn")
            time.sleep(0.3)

    def _start_worker(self) -> None:
        self._spawn("worker", celery_worker_command())
        self.wait_for_log("worker", "ready.", timeout=90)

    def teardown(self) -> None:
        for process, _log in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process, _log in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        self.pg.destroy()
        self.redis.destroy()

    # processes
    def log(self, name: str, tail: int = 4000) -> str:
        return self.processes[name][1].read_text(errors="replace")[-tail:]

    def pid(self, name: str) -> int:
        return self.processes[name][0].pid

    def pids(self) -> dict[str, list[int]]:
        """The processes of the site and the worker, with their children (uvicorn's worker
        processes): the same list before and after a drill means nothing was restarted."""
        found = {}
        for name in self.processes:
            pid = self.pid(name)
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                children = []
            found[name] = [pid, *sorted(int(child) for child in children)]
        return found

    def assert_alive(self, name: str) -> None:
        process, _log = self.processes[name]
        assert process.poll() is None, f"{name} exited {process.returncode}:\n{self.log(name)}"

    def wait_for_log(self, name: str, text: str, *, count: int = 1, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.processes[name][1].read_text(errors="replace").count(text) < count:
            self.assert_alive(name)
            assert time.monotonic() < deadline, f"{name} never logged {text!r}:\n{self.log(name)}"
            time.sleep(0.2)

    def log_count(self, name: str, text: str) -> int:
        return self.processes[name][1].read_text(errors="replace").count(text)

    def manage(self, *args: str, timeout: float = 120, check: bool = True):
        result = subprocess.run(  # noqa: S603
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check:
            assert result.returncode == 0, (
                f"manage.py {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def shell(self, code: str) -> dict:
        """Run Python in a Django shell on the private services; its last line is JSON.
        It leaves with os._exit: a shell that enqueued a task after a commit otherwise takes
        about 20 s to exit (psycopg's pool threads are joined at interpreter exit)."""
        code += "\nimport os, sys\nsys.stdout.flush()\nsys.stderr.flush()\nos._exit(0)\n"
        result = self.manage("shell", "-c", code)
        return json.loads(result.stdout.strip().splitlines()[-1])

    def billing_audit(self) -> str:
        result = self.manage("billing_audit", check=False)
        assert result.returncode == 0, (
            f"billing_audit exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
        lines = (result.stdout + result.stderr).strip().splitlines()
        return lines[-1] if lines else "exit 0"

    # data
    def new_account(self, recharge_units: int = 1_000) -> Account:
        """A funded account (no starter pack, so every success is a charge) on the Enterprise
        tier (limits far above the drill's load), with one inference key."""
        data = self.shell(
            "import json, uuid\n"
            "from billing.services import recharge\n"
            "from console.models import Tier\n"
            "from keys.services import api_key_create\n"
            "from tests.factories import make_account, make_user\n"
            "owner = make_user(f'drill-{uuid.uuid4().hex}@example.com')\n"
            "account = make_account(owner, name='Drill', starter_pack=False, "
            "tier=Tier.objects.get(slug='enterprise'))\n"
            f"recharge(account=account, amount_nano={recharge_units} * 10**9, "
            "reference=f'drill-{account.pk}')\n"
            "project = account.projects.get(is_default=True)\n"
            "raw = api_key_create(account=account, project=project, label='drill', "
            "actor=None).raw\n"
            "print(json.dumps({'id': account.pk, 'project': project.pk, 'key': raw}))\n"
        )
        return Account(data["id"], data["project"], data["key"])

    def sql(self, query: str, params=(), *, timeout: float = 60) -> list[tuple]:
        """One query on a fresh connection, retried while the database is (re)starting."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.database_url, connect_timeout=3) as connection:
                    return connection.execute(query, params).fetchall()
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def state(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis.url(0), socket_timeout=5)

    def send_task(self, name: str, *args) -> None:
        """Enqueue a task through the private broker, as beat or a web process would."""
        from celery import Celery

        app = Celery(broker=self.redis.url(0))
        try:
            app.send_task(name, args=args)
        finally:
            app.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    _fail_without_binaries()
    stack = Stack(tmp_path_factory.mktemp("dependency-drills"))
    try:
        stack.setup()
    except BaseException as error:
        stack.teardown()
        if isinstance(error, ServiceError | AssertionError):
            pytest.fail(f"the drill's private stack did not start: {error}", pytrace=False)
        raise
    yield stack
    stack.teardown()


@pytest.fixture
def say(request, capsys):
    """A drill's figures: through the harness's `report` (printed under "drill figures" at
    the end of the run) when drills/conftest.py provides it, else printed at once."""
    try:
        report = request.getfixturevalue("report")
    except pytest.FixtureLookupError:
        report = None

    def _say(text: str) -> None:
        if report is not None:
            for line in text.strip().splitlines():
                report(line.strip())
            return
        with capsys.disabled():
            print(text)

    return _say


# --- Load ------------------------------------------------------------------------------------


@dataclass
class Answer:
    started: float
    finished: float = 0.0
    stream: bool = False
    status: int | None = None
    code: str | None = None  # BigModel's error code, from the body or the stream's error event
    request_id: str | None = None
    ok: bool = False
    detail: str = ""

    @property
    def seconds(self) -> float:
        return self.finished - self.started

    @property
    def clear_error(self) -> bool:
        """A refusal a client can act on: an error status (never 500) with a code."""
        return not self.ok and bool(self.code) and self.status not in (None, 500)

    def __str__(self) -> str:
        kind = "stream" if self.stream else "plain"
        return (
            f"{kind} status={self.status} code={self.code} ok={self.ok} "
            f"{self.seconds:.2f}s id={self.request_id} {self.detail[:200]}"
        )


class Load:
    """CONCURRENCY threads sending chat completions (every fourth one a stream) until stopped,
    each on a new connection: uvicorn's worker processes take them in turn, so a process
    that recovers late cannot hide behind one that recovered early."""

    def __init__(self, base: str, key: str, *, concurrency: int = CONCURRENCY):
        self.base, self.key = base, key
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sequence = iter(range(10**9))
        self._threads = [
            threading.Thread(target=self._run, daemon=True) for _ in range(concurrency)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=ANSWER_BOUND_SECONDS + 30)

    def _run(self) -> None:
        with httpx.Client(
            base_url=self.base,
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=httpx.Timeout(ANSWER_BOUND_SECONDS + 20),
            limits=httpx.Limits(max_keepalive_connections=0),
        ) as client:
            while not self._stop.is_set():
                with self._lock:
                    number = next(self._sequence)
                answer = self._one(client, number)
                with self._lock:
                    self.answers.append(answer)

    def _one(self, client: httpx.Client, number: int) -> Answer:
        stream = number % 4 == 0
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": f"drill request {number}"}],
            "max_tokens": 30,
        }
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        answer = Answer(started=time.monotonic(), stream=stream)
        try:
            with client.stream("POST", PATH, json=body) as response:
                answer.status = response.status_code
                answer.request_id = response.headers.get("x-request-id")
                if response.status_code == 200 and stream:
                    self._read_stream(answer, response)
                else:
                    response.read()
                    self._read_body(answer, response)
        except (httpx.HTTPError, ValueError) as error:
            answer.detail = f"{type(error).__name__}: {error}"
        answer.finished = time.monotonic()
        return answer

    @staticmethod
    def _read_body(answer: Answer, response: httpx.Response) -> None:
        if not response.headers.get("content-type", "").startswith("application/json"):
            answer.detail = f"not JSON ({response.headers.get('content-type')}): {response.text}"
            return
        data = response.json()
        if response.status_code == 200:
            answer.ok = bool(data.get("choices"))
            return
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict) and error.get("code") and error.get("message"):
            answer.code = str(error["code"])
        answer.detail = response.text

    @staticmethod
    def _read_stream(answer: Answer, response: httpx.Response) -> None:
        done = False
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line.removeprefix("data: ")
            if data == "[DONE]":
                done = True
                continue
            event = json.loads(data)
            if "error" in event:
                answer.code = str(event["error"].get("code") or "")
                answer.detail = data
        answer.ok = done and not answer.code
        if not done and not answer.code:
            answer.detail = "the stream ended with neither [DONE] nor an error event"

    # reading the results while the load runs
    def snapshot(self) -> list[Answer]:
        with self._lock:
            return list(self.answers)

    def wait(self, predicate, *, timeout: float, what: str) -> float:
        deadline = time.monotonic() + timeout
        while not predicate(self.snapshot()):
            assert time.monotonic() < deadline, f"timed out waiting for {what}: " + summary(
                self.snapshot()
            )
            time.sleep(0.1)
        return time.monotonic()


def successes(answers, *, started_after: float = 0.0) -> list[Answer]:
    return [a for a in answers if a.ok and a.started >= started_after]


def summary(answers: list[Answer]) -> str:
    kinds = Counter(
        "ok" if a.ok else f"{a.status}/{a.code}" if a.code else f"{a.status}:unclear"
        for a in answers
    )
    return ", ".join(f"{kind} × {count}" for kind, count in kinds.most_common())


# --- Checks shared by the drills ---------------------------------------------------------------


def check_answers(answers: list[Answer], *, down: float, up: float, outage_codes: set[str]) -> dict:
    """Every answer is a success or a clear error within the bound; every answer given while
    the dependency was down is an error with one of the documented codes. (A request that
    started during the outage may also wait for the dependency and succeed once it is back:
    the database pool waits up to its timeout for a connection.)"""
    unclear = [a for a in answers if not a.ok and not a.clear_error]
    assert not unclear, (
        f"{len(unclear)} unclear answers (500, HTML, a cut stream) among {summary(answers)}, "
        "e.g.:\n" + "\n".join(map(str, unclear[:5]))
    )
    slow = [a for a in answers if a.seconds > ANSWER_BOUND_SECONDS]
    assert not slow, f"{len(slow)} answers took over {ANSWER_BOUND_SECONDS}s, e.g. {slow[0]}"
    answered = [a for a in answers if down <= a.finished <= up]
    # A request sent after the stop cannot succeed before the start (one admitted before the
    # stop may still be answered, and charged, after it).
    impossible = [a for a in answered if a.ok and a.started >= down]
    assert not impossible, f"succeeded while the dependency was down: {impossible[0]}"
    inside = [a for a in answered if not a.ok]
    assert inside, "no error came while the dependency was down: the drill measured nothing"
    codes = Counter(a.code for a in inside)
    waited = [a for a in answers if down <= a.started <= up and a.finished > up]
    assert set(codes) <= outage_codes, f"outage answers {dict(codes)}, documented {outage_codes}"
    errors = [a for a in answers if not a.ok]
    return {
        "inside": len(inside),
        "inside_codes": dict(codes),
        "inside_max_s": max(a.seconds for a in inside),
        "inside_ok": len([a for a in answered if a.ok]),
        "waited": len(waited),
        "waited_ok": len([a for a in waited if a.ok]),
        "errors": len(errors),
        "error_kinds": summary(errors),
    }


def check_recovery(answers: list[Answer], *, up: float) -> dict:
    """The gateway recovers by itself, in every web process: the first success comes soon
    after the dependency is back, every request started a little later succeeds at normal
    speed, and the last TAIL requests all succeeded."""
    after = successes(answers, started_after=up)
    assert after, "no request succeeded after the dependency came back"
    first = min(a.finished for a in after)
    assert first - up <= RECOVERY_BOUND_SECONDS, f"recovery took {first - up:.1f}s"
    late = [a for a in answers if a.started >= up + RECOVERY_GRACE_SECONDS]
    lagging = [a for a in late if not a.ok or a.seconds > SLOW_SECONDS]
    assert not lagging, (
        f"{len(lagging)} requests started {RECOVERY_GRACE_SECONDS}s after the dependency was "
        f"back failed or took over {SLOW_SECONDS}s, e.g.:\n" + "\n".join(map(str, lagging[:5]))
    )
    ordered = sorted(answers, key=lambda a: a.started)
    failed = [a for a in ordered[-TAIL:] if not a.ok]
    assert not failed, f"{len(failed)} of the last {TAIL} requests failed: " + summary(failed)
    settled = max(
        (a.finished for a in answers if a.started >= up and (not a.ok or a.seconds > SLOW_SECONDS)),
        default=up,
    )
    return {
        "recovery_s": first - up,
        "settled_s": settled - up,
        "late_max_s": max((a.seconds for a in late), default=0.0),
        "errors_after_first_success": len([a for a in answers if not a.ok and a.started >= first]),
    }


def check_money(stack: Stack, account: Account, answers: list[Answer]) -> dict:
    """Each success: one usage record (200) and one charge. No request charged twice, no
    request the client saw fail charged, no charge for a request nobody answered."""
    ok_ids = {a.request_id for a in answers if a.ok}
    failed_ids = {a.request_id for a in answers if not a.ok and a.request_id}
    assert None not in ok_ids and len(ok_ids) == len(successes(answers))
    charges = dict(
        stack.sql(
            "SELECT request_id, count(*) FROM billing_ledgerentry "
            "WHERE account_id = %s AND kind = 'charge' GROUP BY request_id",
            [account.id],
        )
    )
    records: dict[str, list[int]] = {}
    for request_id, status in stack.sql(
        "SELECT request_id, status FROM billing_usagerecord WHERE account_id = %s", [account.id]
    ):
        records.setdefault(request_id, []).append(status)
    doubled = {rid: n for rid, n in charges.items() if n > 1}
    assert not doubled, f"requests charged more than once: {doubled}"
    doubled = {rid: s for rid, s in records.items() if len(s) > 1}
    assert not doubled, f"requests with more than one usage record: {doubled}"
    lost = [rid for rid in ok_ids if charges.get(rid) != 1 or records.get(rid) != [200]]
    assert not lost, f"{len(lost)} successes without exactly one charge and one 200 record"
    charged_failures = failed_ids & set(charges)
    assert not charged_failures, (
        f"{len(charged_failures)} requests the client saw fail were charged: "
        + ", ".join(sorted(charged_failures)[:5])
    )
    strays = set(charges) - ok_ids - failed_ids
    assert not strays, f"{len(strays)} charges for requests no client answer names"
    refusals = Counter(
        status for rid in failed_ids for status in records.get(rid, []) if status != 200
    )
    return {
        "successes": len(ok_ids),
        "charges": sum(charges.values()),
        "failed": len(failed_ids),
        "failed_with_refusal_record": sum(refusals.values()),
    }


def check_state_released(stack: Stack, account: Account) -> dict:
    """No concurrency slot held and no money reserved once the load has stopped. Reads the
    shared state's keys for the account and its project, whichever shape they have: sorted
    sets (slots, per-request holds) or counters."""
    client = stack.state()
    names = [
        concurrency_key(account.id),
        *reservation_keys(account_id=account.id, project_id=account.project),
    ]
    found = {}
    for name in names:
        key = STATE_PREFIX + name
        kind = client.type(key).decode()
        if kind == "zset":
            found[name] = client.zcard(key)
        elif kind == "string":
            found[name] = int(client.get(key) or 0)
    left = {name: value for name, value in found.items() if value}
    assert not left, f"slots or reservations left after the load: {left}"
    return found


def latency(answers: list[Answer]) -> str:
    ok = sorted(a.seconds for a in answers if a.ok)
    if not ok:
        return "-"
    return (
        f"median {statistics.median(ok) * 1000:.0f} ms, p95 {ok[int(len(ok) * 0.95)] * 1000:.0f} ms"
    )


# --- Drills ------------------------------------------------------------------------------------


def restart_under_load(
    stack: Stack, account: Account, *, stop, start, outage: float, name: str
) -> tuple[list, float, float]:
    with Load(stack.base, account.key) as load:
        load.wait(lambda a: len(successes(a)) >= BEFORE, timeout=120, what="load before")
        stop()
        down = time.monotonic()
        time.sleep(outage)
        start()
        up = time.monotonic()
        load.wait(
            lambda a: len(successes(a, started_after=up)) >= AFTER,
            timeout=RECOVERY_BOUND_SECONDS + 120,
            what="successes after recovery",
        )
    # Every answer, in seconds from the outage's start, for a post-mortem.
    with (stack.tmp / f"{name}-answers.jsonl").open("w") as dump:
        for a in sorted(load.answers, key=lambda a: a.started):
            row = {**vars(a), "started": a.started - down, "finished": a.finished - down}
            dump.write(json.dumps({**row, "up": up - down}) + "\n")
    return load.answers, down, up


def outage_drill(stack, *, stop, start, outage: float, name: str, code: str):
    """What both restart drills share: a fresh account under load while `stop`/`start` take a
    dependency away and back; the answers while it was down carry `code`; the site recovers
    with no process restarted; the worker runs a task again (its database connections and
    its broker connection recover); the money matches what the client saw."""
    account = stack.new_account()
    pids = stack.pids()
    answers, down, up = restart_under_load(
        stack, account, stop=stop, start=start, outage=outage, name=name
    )
    outage_figures = check_answers(answers, down=down, up=up, outage_codes={code})
    recovery = check_recovery(answers, up=up)
    for process in pids:
        stack.assert_alive(process)
    assert stack.pids() == pids, "a process of the site or the worker was restarted"
    done = stack.log_count("worker", "sweep_pending_payments settled=")
    stack.send_task("billing.tasks.sweep_pending_payments")
    stack.wait_for_log("worker", "sweep_pending_payments settled=", count=done + 1, timeout=60)
    money = check_money(stack, account, answers)
    return account, answers, down, up, outage_figures, recovery, money


def test_postgres_restart_under_load(stack, say):
    """PostgreSQL stops (fast shutdown: every connection cut) and starts again under load.
    While it is down the gateway answers 503 / 1241; afterwards the pools reconnect with no
    restart of uvicorn or the worker; no charge is lost or doubled; billing_audit is clean."""
    started = time.monotonic()
    account, answers, down, up, outage, recovery, money = outage_drill(
        stack,
        stop=lambda: stack.pg.stop("fast"),
        start=stack.pg.start,
        outage=POSTGRES_OUTAGE_SECONDS,
        name="postgres",
        code="1241",
    )
    state = check_state_released(stack, account)
    audit = stack.billing_audit()
    say(
        f"\n[drill: PostgreSQL restart] {len(answers)} requests in "
        f"{time.monotonic() - started:.0f}s "
        f"(concurrency {CONCURRENCY}, every 4th a stream; outage {up - down:.1f}s); "
        f"success latency {latency(answers)}\n"
        f"  errors answered while down: {outage['inside']}, codes {outage['inside_codes']}, "
        f"slowest {outage['inside_max_s']:.1f}s (the API's {API_WAIT_SECONDS}s wait); "
        f"successes admitted before the stop and answered during it: {outage['inside_ok']}; "
        "started while "
        f"down and answered after: {outage['waited']}, {outage['waited_ok']} of them "
        f"successes; all errors: {outage['error_kinds']}\n"
        f"  first success {recovery['recovery_s']:.1f}s after the start, all slow or failed "
        f"answers over {recovery['settled_s']:.1f}s after it; requests started "
        f"{RECOVERY_GRACE_SECONDS}s after it: all succeeded, slowest "
        f"{recovery['late_max_s']:.1f}s; last {TAIL} all succeeded; uvicorn and worker "
        "not restarted\n"
        f"  money: {money['successes']} successes = {money['charges']} charges, none doubled, "
        f"{money['failed']} failed requests charged nothing; "
        f"slots and reservations left {sum(state.values())}; "
        f"{audit}"
    )


def test_redis_restart_under_load(stack, say):
    """Redis stops (everything it held is gone) and starts again under load. While it is
    down the gateway answers 503 / 1240 (docs/api.md) and records the refusals; afterwards
    it recovers by itself; no charge lost or doubled; no slot or reservation left over."""
    started = time.monotonic()
    account, answers, down, up, outage, recovery, money = outage_drill(
        stack,
        stop=stack.redis.stop,
        start=stack.redis.start,
        outage=REDIS_OUTAGE_SECONDS,
        name="redis",
        code="1240",
    )
    # Refusals passed authentication: each has its usage record (503, 1240), costing nothing.
    refused = [a.request_id for a in answers if a.code == "1240"]
    recorded = dict(
        stack.sql(
            "SELECT request_id, code FROM billing_usagerecord "
            "WHERE account_id = %s AND status = 503",
            [account.id],
        )
    )
    assert all(recorded.get(rid) == "1240" for rid in refused), "a 1240 refusal has no record"
    state = check_state_released(stack, account)
    audit = stack.billing_audit()
    say(
        f"\n[drill: Redis restart] {len(answers)} requests in {time.monotonic() - started:.0f}s "
        f"(concurrency {CONCURRENCY}, every 4th a stream; outage {up - down:.1f}s); "
        f"success latency {latency(answers)}\n"
        f"  errors answered while down: {outage['inside']}, codes {outage['inside_codes']}, "
        f"slowest {outage['inside_max_s']:.2f}s; successes admitted before the stop and "
        f"answered during it: {outage['inside_ok']}; all errors: {outage['error_kinds']}\n"
        f"  first success {recovery['recovery_s']:.1f}s after the start; requests started "
        f"{RECOVERY_GRACE_SECONDS}s after it: all succeeded, slowest "
        f"{recovery['late_max_s']:.1f}s; last {TAIL} all succeeded; uvicorn and worker not "
        "restarted, worker back on the broker\n"
        f"  money: {money['successes']} successes = {money['charges']} charges, none doubled, "
        f"{len(refused)} refusals 1240 recorded at no cost; "
        f"slots and reservations left {sum(state.values())}; "
        f"{audit}"
    )


def test_pending_payment_settled_by_sweep_after_redis_lost_queue(stack, say):
    """A sandbox card that stays pending queues its confirmation task in Redis; Redis
    restarts with nothing on disk, so the task is gone; the database sweep, run by the
    worker, settles the payment exactly once and the wallet and ledger agree."""
    account = stack.new_account(recharge_units=100)
    pids = stack.pids()
    started = time.monotonic()
    payment = stack.shell(
        "import json\n"
        "from billing.models import Payment, Wallet\n"
        "from billing.payments import payment_method_add, payment_start_card\n"
        "from console.models import Account\n"
        "from django.utils import timezone\n"
        f"account = Account.objects.get(pk={account.id})\n"
        "card = payment_method_add(account=account, number='4000 0000 0000 3220', exp_month=12, "
        "exp_year=timezone.now().year + 2, cvc='123', actor=None)\n"
        "payment = payment_start_card(account=account, amount_nano=1000 * 10**9, "
        "payment_method=card, actor=None)\n"
        "print(json.dumps({'id': payment.pk, 'status': payment.status, "
        "'reference': payment.reference, 'amount': payment.amount_nano, "
        "'bonus': payment.bonus_nano}))\n"
    )
    created = time.monotonic()
    assert payment["status"] == "pending", payment
    before = wallet(stack, account)
    # The confirmation task is in Redis: queued, or taken by the worker (acks_late keeps a
    # copy in Redis until the task has run).
    client = stack.state()
    queued = client.llen("celery") + client.hlen("unacked")
    assert queued >= 1, "the confirmation task is not in Redis"

    stack.redis.stop()
    stack.redis.start()
    client = stack.state()
    assert client.llen("celery") + client.hlen("unacked") == 0, "Redis kept its queue"

    # Past the task's countdown (SANDBOX_PENDING_SECONDS + 1): nothing confirms it now.
    lost_check = created + SANDBOX_PENDING_SECONDS + 1 + 3
    time.sleep(max(0.0, lost_check - time.monotonic()))
    assert payment_status(stack, payment["id"]) == "pending", (
        "the lost confirmation task ran anyway:\n" + stack.log("worker")
    )
    confirms = stack.log_count("worker", f"confirm_payment payment={payment['id']} ")

    # The sweep settles card payments pending over SANDBOX_PENDING_SECONDS + 10 seconds.
    time.sleep(max(0.0, created + SANDBOX_PENDING_SECONDS + 10 + 1 - time.monotonic()))
    done = stack.log_count("worker", "sweep_pending_payments settled=1")
    stack.send_task("billing.tasks.sweep_pending_payments")
    stack.wait_for_log("worker", "sweep_pending_payments settled=1", count=done + 1, timeout=60)
    assert payment_status(stack, payment["id"]) == "succeeded"
    settled_at = time.monotonic()

    # Again: the sweep once more, and a late confirmation (as a retried task would): nothing.
    sweeps = stack.log_count("worker", "sweep_pending_payments settled=")
    stack.send_task("billing.tasks.sweep_pending_payments")
    stack.send_task("billing.tasks.confirm_payment", payment["id"])
    stack.wait_for_log("worker", "sweep_pending_payments settled=", count=sweeps + 1, timeout=60)
    stack.wait_for_log(
        "worker", f"confirm_payment payment={payment['id']} status=succeeded", timeout=60
    )
    entries = stack.sql(
        "SELECT kind, recharge_delta_nano, bonus_delta_nano FROM billing_ledgerentry "
        "WHERE account_id = %s AND reference = %s",
        [account.id, payment["reference"]],
    )
    # Credited once: one recharge entry, and one bonus grant when a promotion applied.
    kinds = Counter(kind for kind, _recharge, _bonus in entries)
    expected = Counter({"recharge": 1, "bonus_grant": 1 if payment["bonus"] else 0})
    assert kinds == +expected, f"the payment's ledger entries: {entries}"
    after = wallet(stack, account)
    assert after["recharge"] - before["recharge"] == payment["amount"]
    assert after["bonus"] - before["bonus"] == payment["bonus"]
    assert confirms == 0, "a confirmation task ran before the sweep"
    # The worker held the confirmation (an ETA task) when Redis went away, and lived on.
    stack.assert_alive("worker")
    assert stack.pids() == pids, "a process of the site or the worker was restarted"
    audit = stack.billing_audit()
    say(
        f"\n[drill: pending payment, Redis lost its queue] payment {payment['reference']} "
        f"of {payment['amount'] / 1e9:.2f} (+{payment['bonus'] / 1e9:.2f} bonus): "
        f"{queued} task in Redis before the restart, 0 after; still pending "
        f"{lost_check - created:.0f}s after creation (its task lost); settled by the "
        f"sweep {settled_at - created:.1f}s after creation; a second sweep and a late "
        f"confirmation changed nothing; ledger {dict(kinds)}, "
        f"wallet +{payment['amount'] / 1e9:.2f} recharge +{payment['bonus'] / 1e9:.2f} bonus; "
        f"worker not restarted; {audit} "
        f"({time.monotonic() - started:.0f}s)"
    )


def wallet(stack: Stack, account: Account) -> dict:
    recharge, bonus, arrears = stack.sql(
        "SELECT recharge_nano, bonus_nano, arrears_nano FROM billing_wallet WHERE account_id = %s",
        [account.id],
    )[0]
    return {"recharge": recharge, "bonus": bonus, "arrears": arrears}


def payment_status(stack: Stack, payment_id: int) -> str:
    return stack.sql("SELECT status FROM billing_payment WHERE id = %s", [payment_id])[0][0]
