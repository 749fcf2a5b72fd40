"""A private PostgreSQL cluster and a private redis-server for the dependency drills.

The drills stop and restart PostgreSQL and Redis under load. The machine's own services
(PostgreSQL on 5432, Redis on 6379) are shared with other sessions and with CI, so a drill
never touches them: it makes its own cluster (initdb into a temporary folder, on a free port)
and its own redis-server (a free port, nothing on disk), and points the site, the Celery
worker and its own checks at those through the environment.

PostgreSQL refuses to run as root: as root the cluster belongs to the `postgres` system user
(Debian's package creates it) and every server command runs through `runuser`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def _postgres_bin() -> Path:
    """DRILL_PG_BIN, else the newest /usr/lib/postgresql/<version>/bin with initdb (the
    version .ci/run starts; 15 on the project's machines)."""
    if os.environ.get("DRILL_PG_BIN"):
        return Path(os.environ["DRILL_PG_BIN"])
    found = sorted(
        (path for path in Path("/usr/lib/postgresql").glob("*/bin") if (path / "initdb").exists()),
        key=lambda path: [int(part) for part in path.parent.name.split(".") if part.isdigit()],
    )
    return found[-1] if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _postgres_bin()
REDIS_SERVER = os.environ.get("DRILL_REDIS_SERVER", "redis-server")
# The machine's shared services: never stopped, never restarted by a drill.
SHARED_PORTS = frozenset({5432, 6379})


class ServiceError(RuntimeError):
    """A private service could not be made, started or stopped (the message says why)."""


def free_port() -> int:
    """A port nobody listens on now (and never one of the shared services')."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port not in SHARED_PORTS:
            return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def missing_binaries() -> list[str]:
    """What the drills need and this machine lacks (empty when all is there)."""
    missing = [str(PG_BIN / name) for name in ("initdb", "pg_ctl", "postgres", "psql")]
    missing = [path for path in missing if not os.access(path, os.X_OK)]
    if shutil.which(REDIS_SERVER) is None:
        missing.append(REDIS_SERVER)
    return missing


def _run(command: list[str], *, check: bool = True, timeout: float = 60, **kwargs):
    result = subprocess.run(  # noqa: S603 - fixed binaries, arguments built here
        command, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )
    if check and result.returncode != 0:
        raise ServiceError(
            f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


class PrivatePostgres:
    """A throw-away PostgreSQL cluster: `setup()` once, then `stop()`, `start()`,
    `restart()` as often as a drill likes, and `destroy()` at the end."""

    def __init__(
        self,
        *,
        port: int | None = None,
        role: str = "console",
        password: str = "console",  # noqa: S107 - a throw-away local cluster
    ):
        self.port = port or free_port()
        if self.port in SHARED_PORTS:
            raise ServiceError(f"port {self.port} belongs to the machine's shared PostgreSQL")
        self.role, self.password = role, password
        self.root = Path(tempfile.mkdtemp(prefix="drill-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.user = "postgres" if os.geteuid() == 0 else None
        self.databases: list[str] = []

    # --- commands as the cluster's owner ---

    def _as_owner(self, command: list[str]) -> list[str]:
        return ["runuser", "-u", self.user, "--", *command] if self.user else command

    def _pg(self, name: str, *args: str, check: bool = True, timeout: float = 60):
        return _run(self._as_owner([str(PG_BIN / name), *args]), check=check, timeout=timeout)

    def psql(self, sql: str, *, database: str = "postgres") -> str:
        """Run SQL as the cluster's superuser over its private socket; returns the rows."""
        result = self._pg(
            "psql",
            "-h",
            str(self.root),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-qtA",
            "-c",
            sql,
        )
        return result.stdout.strip()

    # --- life cycle ---

    def setup(self) -> PrivatePostgres:
        missing = missing_binaries()
        if missing:
            raise ServiceError(
                "the dependency drills need PostgreSQL 15 and Redis binaries; missing: "
                + ", ".join(missing)
                + " (apt-get install postgresql postgresql-contrib redis-server)"
            )
        if self.user:
            shutil.chown(self.root, self.user, self.user)
        self._pg(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
            timeout=120,
        )
        self.start()
        return self

    def start(self, timeout: float = 60) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root}"
            " -c max_connections=100 -c shared_buffers=64MB -c log_min_messages=warning"
        )
        self._pg(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            str(int(timeout)),
            "start",
            timeout=timeout + 10,
        )

    def stop(self, mode: str = "fast", timeout: float = 60) -> None:
        """`fast`: roll back open transactions and disconnect every client (a restart);
        `immediate`: no shutdown checkpoint (a crash, recovered from WAL on start)."""
        self._pg(
            "pg_ctl",
            "-D",
            str(self.data),
            "-m",
            mode,
            "-w",
            "-t",
            str(int(timeout)),
            "stop",
            timeout=timeout + 10,
        )

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def is_running(self) -> bool:
        return self._pg("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            if self.is_running():
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    # --- the application's role and database ---

    def create_database(self, name: str) -> str:
        """The application's role (as .ci/run makes it) and a C.UTF-8 UTF-8 database it owns,
        with pg_trgm; returns its URL."""
        self.psql(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
            f"'{self.role}') THEN CREATE ROLE {self.role} LOGIN CREATEDB PASSWORD "
            f"'{self.password}'; END IF; END $$;"
        )
        self.psql(
            f"CREATE DATABASE {name} OWNER {self.role} ENCODING 'UTF8' "
            "LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8' TEMPLATE template0"
        )
        self.psql("CREATE EXTENSION IF NOT EXISTS pg_trgm", database=name)
        self.databases.append(name)
        return self.url(name)

    def url(self, database: str) -> str:
        return f"postgres://{self.role}:{self.password}@127.0.0.1:{self.port}/{database}"

    def server_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


class PrivateRedis:
    """A redis-server of the drill's own, keeping nothing on disk: a restart empties it,
    exactly like the production shape's Redis (`--save "" --appendonly no`)."""

    def __init__(self, *, port: int | None = None):
        self.port = port or free_port()
        if self.port in SHARED_PORTS:
            raise ServiceError(f"port {self.port} belongs to the machine's shared Redis")
        self.root = Path(tempfile.mkdtemp(prefix="drill-redis-"))
        self.log = self.root / "redis.log"
        self.process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 20) -> None:
        if missing_binaries():
            raise ServiceError("missing binaries: " + ", ".join(missing_binaries()))
        with self.log.open("a") as log:
            self.process = subprocess.Popen(  # noqa: S603
                [
                    shutil.which(REDIS_SERVER) or REDIS_SERVER,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.root),
                    "--daemonize",
                    "no",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
            )
        deadline = time.monotonic() + timeout
        while not self._pong():
            if self.process.poll() is not None:
                raise ServiceError("redis-server exited:\n" + self.log.read_text())
            if time.monotonic() > deadline:
                raise ServiceError("redis-server did not answer:\n" + self.log.read_text())
            time.sleep(0.05)

    setup = start

    def _pong(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM: with nothing to save, Redis exits at once and everything it held is gone."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
