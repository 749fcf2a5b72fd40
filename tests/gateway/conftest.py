import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.db import connection

from console.shared_state import shared_state
from keys.services import api_key_create
from tests.billing.factories import funded_account

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def fresh_shared_state():
    """Rate windows, slots and reservations from another test must not leak into this one."""
    shared_state.cache_clear()
    state = shared_state()
    client = getattr(state, "client", None)
    if client is not None:
        for key in client.scan_iter(state.prefix + "*"):
            client.delete(key)
    yield state
    shared_state.cache_clear()


@pytest.fixture
def key_for():
    """`key_for(account)` → (raw key, ApiKey) in the account's Default project."""

    def make(account, **fields):
        project = fields.pop("project", None) or account.projects.get(is_default=True)
        created = api_key_create(
            account=account, project=project, label="test", actor=None, **fields
        )
        return created.raw, created.key

    return make


@pytest.fixture
def funded(key_for):
    account = funded_account(recharge_units=100, bonus_units=10)
    raw, key = key_for(account)
    return account, raw, key


@pytest.fixture
def uvicorn_site():
    """The site served by uvicorn in a subprocess, on the test database and Redis (live_server
    is WSGI: it buffers streams and never sees a client leave). Needs `transaction=True`
    tests on PostgreSQL, so the server process sees the test's data."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@"
        f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "SIMULATOR_FIRST_TOKEN_MS": "20",
        "SIMULATOR_CHUNK_MS": "5",
        "STATICFILES_BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage",
    }
    if not os.environ.get("REDIS_URL"):
        pytest.skip("needs Redis: the server process and the test share limits and reservations")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "console.asgi:application",
            "--port",
            str(port),
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(base + "/healthz", timeout=2)
            break
        except OSError:
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.3)
    yield base
    process.terminate()
    process.wait(timeout=30)
