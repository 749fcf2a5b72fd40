"""The command lines of the project's own server processes, as the suite, the drills
(drills/) and the benchmarks (bench/) start them in subprocesses: one place, so all three run
the same server. No Django here: callers decide the environment before a process starts."""

import socket
import sys


def free_port() -> int:
    """A port free on loopback now (the OS picks it; a process started next binds it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def uvicorn_command(
    port: int, *, workers: int = 1, app: str = "config.asgi:application", extra=()
) -> list[str]:
    """uvicorn serving `app` on 127.0.0.1:`port` (the console by default), without the
    access log: a line per request would be most of what a loaded server does."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        *extra,
    ]


def celery_worker_command() -> list[str]:
    """One Celery worker running tasks in its own process (--pool=solo), not talking to
    other workers at start (no gossip, no mingle: a test's worker is alone)."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "--pool=solo",
        "--without-gossip",
        "--without-mingle",
        "--loglevel=INFO",
    ]
