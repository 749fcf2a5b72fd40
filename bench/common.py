"""What the benchmarks share: the scale, scratch databases and cached seeds, the processes
they start (uvicorn, the upstream), percentiles, and the result each one hands to
`bench/run.py`. No Django here: a script decides which database it measures before Django
reads its settings.

Seeds are cached as template databases on the same PostgreSQL server (`bench_seed_<kind>_
<fingerprint>`). The fingerprint covers the migrations and the seeding script, so a change to
either builds the seed anew; a run measures a copy (CREATE DATABASE … TEMPLATE …), so what a
run deletes or adds never reaches the next one.
"""

import contextlib
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg

from tests import processes
from tests.processes import free_port  # noqa: F401 - the benchmarks' one name for it

ROOT = Path(__file__).resolve().parents[1]
SCALE = os.environ.get("BENCH_SCALE", "full")
if SCALE not in ("quick", "full"):
    sys.exit(f"BENCH_SCALE must be quick or full, not {SCALE!r}")
QUICK = SCALE == "quick"


def seconds(full: float, quick: float) -> float:
    """How long one measured cell runs: BENCH_SECONDS wins, else by scale."""
    if os.environ.get("BENCH_SECONDS"):
        return float(os.environ["BENCH_SECONDS"])
    return quick if QUICK else full


def percentile(values, fraction: float) -> float:
    """Nearest-rank percentile (the value at or below which `fraction` of the values lie)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    return ordered[max(0, min(len(ordered) - 1, math.ceil(len(ordered) * fraction) - 1))]


def require(*, redis: bool = False) -> None:
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit(f"{Path(sys.argv[0]).name} needs DATABASE_URL=postgres://... (a scratch database)")
    if redis and not os.environ.get("REDIS_URL", "").startswith("redis"):
        sys.exit(f"{Path(sys.argv[0]).name} needs REDIS_URL=redis://...")


# --- databases -------------------------------------------------------------------------


def database_url(name: str, base: str | None = None) -> str:
    """DATABASE_URL with another database name on the same server."""
    parts = urlparse(base or os.environ["DATABASE_URL"])
    return urlunparse(parts._replace(path="/" + name))


def _server():
    # The maintenance database: CREATE/DROP DATABASE cannot run inside the one it names.
    return psycopg.connect(database_url("postgres"), autocommit=True)


def database_exists(name: str) -> bool:
    with _server() as connection:
        return bool(
            connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        )


def database_create(name: str, template: str = "template0") -> str:
    """A new database (dropped first if it exists), copied from `template`; its URL."""
    database_drop(name)
    with _server() as connection:
        # FILE_COPY: a checkpoint and a copy of the files, much faster than WAL-logging every
        # page of a seeded database of a gigabyte.
        strategy = "" if template == "template0" else " STRATEGY = FILE_COPY"
        connection.execute(
            f'CREATE DATABASE "{name}" TEMPLATE "{template}" ENCODING \'UTF8\''
            f" LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'{strategy}"
        )
    return database_url(name)


def database_drop(name: str) -> None:
    with _server() as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _fingerprint(*paths: Path, extra: str = "") -> str:
    digest = hashlib.sha256(extra.encode())
    for path in paths:
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(ROOT)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


def _migrations() -> list[Path]:
    return sorted(ROOT.glob("*/migrations"))


def cached_seed(kind: str, build: Callable[[str], None], *, base: str = "", sources=()) -> str:
    """The name of a template database holding a seed, built once by `build(url)` on a copy
    of `base` (the migrated empty database when not given) and reused while the migrations,
    `sources` and `base` are unchanged, on the day it was built: seeds spread rows over the
    days before "now", and a seed a week old would have a week less in a 30-day window."""
    base = base or migrated_template()
    today = time.strftime("%Y-%m-%d", time.gmtime())
    name = f"bench_seed_{kind}_{_fingerprint(*_migrations(), *sources, extra=base + today)}"
    if database_exists(name):
        print(f"seed {kind}: cached ({name})", flush=True)
        return name
    started = time.perf_counter()
    building = name[:50] + "_building"
    url = database_create(building, template=base)
    try:
        build(url)
    except BaseException:
        database_drop(building)
        raise
    with _server() as connection:
        connection.execute(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
        # Stale seeds of the same kind (older migrations or seeding code) are dropped.
        stale = connection.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s AND datname <> %s",
            [f"bench_seed_{kind}_%", name],
        ).fetchall()
    for (old,) in stale:
        if not old.endswith("_building"):
            database_drop(old)
    print(f"seed {kind}: built in {time.perf_counter() - started:.0f} s ({name})", flush=True)
    return name


def seeds(kind: str, sizes: list[int]) -> list[str]:
    """Cached seeds of `kind` (bench/seeds.py) at each of the growing `sizes`, each built on
    the one before: a million-row seed adds 900k rows to the 100k one."""
    script = ROOT / "bench" / "seeds.py"
    names, base, loaded = [], "", 0
    for size in sizes:

        def build(url, first=loaded, last=size):
            run_phase(str(script), kind, url, str(first), str(last))

        base = cached_seed(f"{kind}_{size}", build, base=base, sources=[script])
        names.append(base)
        loaded = size
    return names


def migrated_template() -> str:
    """An empty database with every migration applied, built once per set of migrations."""
    name = f"bench_seed_migrated_{_fingerprint(*_migrations())}"
    if database_exists(name):
        return name
    building = name + "_building"
    url = database_create(building)
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": url},
            check=True,
        )
    except BaseException:
        database_drop(building)
        raise
    with _server() as connection:
        connection.execute(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
    return name


@contextlib.contextmanager
def scratch_copy(template: str, label: str) -> Iterator[str]:
    """A throwaway copy of `template` for one measurement; its URL."""
    name = f"bench_run_{label}_{os.getpid()}"
    url = database_create(name, template=template)
    try:
        yield url
    finally:
        database_drop(name)


def run_phase(script: str, phase: str, database: str, *args: str, result: Path | None = None):
    """Run `script --phase <phase> [args]` on `database` in a new process (Django reads the
    database from the environment once); returns the JSON the phase wrote, if any."""
    env = {**os.environ, "DATABASE_URL": database}
    if result is not None:
        env["BENCH_PHASE_RESULT"] = str(result)
    subprocess.run([sys.executable, script, "--phase", phase, *args], cwd=ROOT, env=env, check=True)
    if result is not None:
        return json.loads(result.read_text())
    return None


def phase_args() -> list[str] | None:
    """The arguments after `--phase` when this process is a phase, else None."""
    if "--phase" in sys.argv:
        return sys.argv[sys.argv.index("--phase") + 1 :]
    return None


def phase_result(data) -> None:
    Path(os.environ["BENCH_PHASE_RESULT"]).write_text(json.dumps(data))
    close_database_pools()


def close_database_pools() -> None:
    """Close Django's psycopg pools: their threads are otherwise joined at exit, 5 s each."""
    if "django.db" in sys.modules:
        from django.db import connections

        for connection in connections.all(initialized_only=True):
            close_pool = getattr(connection, "close_pool", None)
            if close_pool:
                close_pool()


# --- processes -------------------------------------------------------------------------


def wait_http(url: str, *, timeout: float = 90, process: subprocess.Popen | None = None) -> None:
    """Until `url` answers at all (any status), or fail naming what did not start."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"{url}: the server exited with {process.returncode}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout:.0f} s") from None
            time.sleep(0.25)


def uvicorn_command(app: str, port: int, *, workers: int = 1) -> list[str]:
    return processes.uvicorn_command(
        port, workers=workers, app=app, extra=["--log-level", "warning"]
    )


@contextlib.contextmanager
def server(command: list[str], ready_url: str, *, env=None, log: Path | None = None, timeout=90):
    """A server process for the length of the block, started and answering."""
    handle = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        command, cwd=ROOT, env=env or os.environ.copy(), stdout=handle, stderr=handle
    )
    try:
        wait_http(ready_url, timeout=timeout, process=process)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log:
            handle.close()


def pids_listening(port: int) -> int:
    """How many processes hold `port` (uvicorn's workers share one socket)."""
    output = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True)
    return output.stdout.count("pid=")


def tool(name: str, package: str) -> str:
    """The path of a command-line tool, installing its Debian package when missing and we
    may (root, apt-get): `make bench` sets itself up on a fresh machine."""
    found = shutil.which(name)
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing {package} for {name}", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        found = shutil.which(name)
    if not found:
        sys.exit(f"{name} is needed (Debian package {package})")
    return found


# --- results ---------------------------------------------------------------------------


def goal(name: str, value: float, target: float, *, at_most: bool) -> dict:
    """One goal of the issue, as a ratio measured in this run."""
    met = value <= target if at_most else value >= target
    return {
        "goal": name,
        "value": round(value, 3),
        "target": target,
        "at_most": at_most,
        "met": met,
    }


def report(benchmark: str, data: dict, goals: list[dict], headline: str) -> None:
    """Hand the results to bench/run.py (BENCH_RESULT) and print the headline last."""
    path = os.environ.get("BENCH_RESULT")
    if path:
        Path(path).write_text(
            json.dumps(
                {
                    "benchmark": benchmark,
                    "scale": SCALE,
                    "data": data,
                    "goals": goals,
                    "headline": headline,
                },
                ensure_ascii=False,
                indent=1,
            )
        )
    for item in goals:
        sign = "≤" if item["at_most"] else "≥"
        print(
            f"goal {'met' if item['met'] else 'MISSED'}: {item['goal']}: "
            f"{item['value']:.2f} ({sign} {item['target']})"
        )
    print(f"headline: {headline}", flush=True)
