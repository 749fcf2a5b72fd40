"""A real Celery worker in a subprocess, on the test database and the Redis broker."""

import contextlib
import os
import subprocess
from pathlib import Path

from django.db import connection

from tests.processes import celery_worker_command

ROOT = Path(__file__).resolve().parents[1]


def test_database_url() -> str:
    db = connection.settings_dict
    return (
        f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}"
    )


@contextlib.contextmanager
def celery_worker(**extra_env):
    """Yields a list that holds the worker's output once the block has ended."""
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": os.environ["REDIS_URL"],
        **{key: str(value) for key, value in extra_env.items()},
    }
    worker = subprocess.Popen(
        celery_worker_command(),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    try:
        yield output
    finally:
        worker.terminate()
        output.append(worker.communicate(timeout=30)[0])
