"""Shared fixtures: real PostgreSQL and Redis when configured, the personas, the CI rule."""

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import translation

from console.roles import Role
from tests.factories import add_member, make_account, make_user
from tests.processes import free_port, uvicorn_command

IN_CI = os.environ.get("CI", "").lower() == "true"
ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    # Manifest storage 404s under live_server and needs collectstatic; tests serve from finders.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    # Hashing speed is not under test; MD5 keeps persona fixtures fast.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Sign-up and password-reset POSTs per IP and hour are counted in Redis, which outlives a
    # test (and is shared by concurrent runs): every client here is 127.0.0.1. The limit is
    # out of reach; tests/console/test_form_throttling.py sets its own, from a fresh address.
    # (Sign-in throttling, django-axes, keeps its attempts in the test's database: untouched.)
    settings.SIGNUPS_PER_HOUR_PER_IP = settings.PASSWORD_RESETS_PER_HOUR_PER_IP = 1_000_000
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # sync Playwright + live_server
    config._console_skips = []


def pytest_runtest_logreport(report):
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        pytest_runtest_logreport.config._console_skips.append((report.nodeid, reason))


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    pytest_runtest_logreport.config = session.config


def pytest_sessionfinish(session, exitstatus):
    """Under CI=true on PostgreSQL, a skipped test is a failure: CI must run everything."""
    skips = session.config._console_skips
    if IN_CI and connection.vendor == "postgresql" and skips and exitstatus == 0:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        reporter.write_line(f"CI=true on PostgreSQL: {len(skips)} skipped test(s) fail the run:")
        for nodeid, reason in skips:
            reporter.write_line(f"  {nodeid}: {reason}")
        session.exitstatus = 1


def needs(condition: bool, reason: str):
    return pytest.mark.skipif(not condition, reason=reason)


def is_postgres() -> bool:
    return settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"


requires_postgres = needs(
    is_postgres(), "needs PostgreSQL: set DATABASE_URL=postgres://... (make test does in CI)"
)


def redis_url() -> str | None:
    return os.environ.get("REDIS_URL") or None


@pytest.fixture
def redis_client():
    url = redis_url()
    if not url:
        pytest.skip("needs Redis: set REDIS_URL=redis://127.0.0.1:6379/15")
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.RedisError as error:
        pytest.skip(f"Redis at {url} does not answer: {error}")
    yield client


@pytest.fixture(autouse=True)
def _reseed_after_flush(request):
    """Transactional tests flush every table, including what data migrations seeded."""
    marker = request.node.get_closest_marker("django_db")
    if marker and marker.kwargs.get("transaction"):
        request.getfixturevalue("transactional_db")
        import importlib

        from django.apps import apps

        # Everything data migrations seed: tiers, prices and packs, simulator routes, the coding
        # plan's catalogue, staff groups.
        importlib.import_module("console.migrations.0002_seed_tiers").seed(apps, None)
        importlib.import_module("billing.migrations.0003_load_prices_and_packs").load(apps, None)
        importlib.import_module("gateway.migrations.0002_simulator_routes").routes(apps, None)
        importlib.import_module("billing.migrations.0006_seed_promotions").seed(apps, None)
        importlib.import_module("plans.migrations.0002_load_catalogue").load(apps, None)
        importlib.import_module("gateway.migrations.0003_coding_model_routes").routes(apps, None)
        importlib.import_module("gateway.migrations.0004_anthropic_protocol_and_aliases").aliases(
            apps, None
        )
        importlib.import_module("console.migrations.0008_staff_groups").groups(apps, None)


@pytest.fixture(autouse=True)
def _no_sign_in_ceiling_from_earlier_tests():
    """Failed passwords per address are counted in the shared state (Redis), which outlives a
    test: test after test fails passwords for the same addresses, and none may start with its
    address slowed by the tests before it (console/throttling.py)."""
    from console.shared_state import shared_state

    state = shared_state()
    client = getattr(state, "client", None)
    try:
        if client is not None:
            keys = list(client.scan_iter(state.prefix + "signin-address:*", count=1000))
            if keys:
                client.delete(*keys)
        else:
            for key in [key for key in state._counters if key.startswith("signin-address:")]:
                state.delete(key)
    except Exception:  # Redis down: nothing was counted there either
        pass
    yield


@pytest.fixture(autouse=True)
def _emails_sent_by_an_in_process_worker(monkeypatch):
    """Every email leaves through the outbox's Celery task, enqueued on commit
    (console/emails.py). The suite runs no worker: the task runs here when it is enqueued,
    as a worker would run it, so `mailoutbox` holds what was sent once the commit's callbacks
    ran. A test of a broker outage replaces this with a failing `apply_async`."""
    from console.tasks import send_email

    monkeypatch.setattr(
        send_email, "apply_async", lambda args=None, kwargs=None, **options: send_email.apply(args)
    )


@pytest.fixture(autouse=True)
def _english_after_each_test():
    """A request through the test client activates its user's language in this thread and
    leaves it there (as every server request does for its own thread); the next test must not
    start in Chinese because this one ended with a Chinese page."""
    yield
    translation.activate(settings.LANGUAGE_CODE)


@pytest.fixture(autouse=True)
def _billing_audit_after_each_test(request):
    """billing_audit must pass over every test's data (unless the test tampers on purpose)."""
    names = set(request.fixturenames)
    marker = request.node.get_closest_marker("django_db")
    if marker is None and not names & {"db", "transactional_db", "live_server"}:
        yield
        return
    # Requested here so the database outlives this fixture's teardown.
    transactional = (
        "live_server" in names
        or "transactional_db" in names
        or (marker is not None and marker.kwargs.get("transaction"))
    )
    request.getfixturevalue("transactional_db" if transactional else "db")
    yield
    if request.node.get_closest_marker("billing_tamper"):
        return
    from billing.reconciliation import audit_all

    _accounts, problems = audit_all()
    assert not problems, "billing_audit: " + "; ".join(map(str, problems))


# --- The site under a real ASGI server -------------------------------------------------------


@pytest.fixture
def fresh_shared_state():
    """Rate windows, slots and reservations from another test must not leak into this one."""
    from console.shared_state import shared_state

    shared_state.cache_clear()
    state = shared_state()
    client = getattr(state, "client", None)
    if client is not None:
        for key in client.scan_iter(state.prefix + "*"):
            client.delete(key)
    yield state
    shared_state.cache_clear()


# The server process's settings in the static-file shape of production (files collected once,
# served by WhiteNoise), without the manifest: compressing plotly.js takes seconds per run.
STATIC_STORAGE = "django.contrib.staticfiles.storage.StaticFilesStorage"


@pytest.fixture(scope="session")
def collected_static(tmp_path_factory) -> Path:
    """Static files collected for the server process. WhiteNoise serves only collected files
    when DEBUG is off; without them every page under uvicorn lacks its CSS, htmx and plotly."""
    root = tmp_path_factory.mktemp("static")
    env = {**os.environ, "STATIC_ROOT": str(root), "STATICFILES_BACKEND": STATIC_STORAGE}
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    return root


@pytest.fixture
def uvicorn_env() -> dict[str, str]:
    """Extra environment of the server process; a test module overrides this fixture to
    change a setting there (the test process's `settings` fixture does not reach it)."""
    return {}


@pytest.fixture
def uvicorn_mailbox(tmp_path) -> Path:
    """Where the server process writes its emails, one .log file per message."""
    return tmp_path / "mailbox"


@pytest.fixture
def uvicorn_site(fresh_shared_state, uvicorn_env, uvicorn_mailbox, collected_static, tmp_path):
    """The site served by uvicorn in a subprocess, on the test database and Redis (live_server
    is WSGI: it buffers streams and never sees a client leave). Needs `transaction=True`
    tests on PostgreSQL, so the server process sees the test's data."""
    if not os.environ.get("REDIS_URL"):
        pytest.skip("needs Redis: the server process and the test share limits and reservations")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@"
        f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "SIMULATOR_FIRST_TOKEN_MS": "20",
        "SIMULATOR_CHUNK_MS": "5",
        "STATICFILES_BACKEND": STATIC_STORAGE,
        "STATIC_ROOT": str(collected_static),
        # Links in emails point at this server; the emails land in files the test reads.
        "SITE_URL": base,
        # django-environ drops the first slash of the path: four for an absolute one.
        "EMAIL_URL": f"filemail:///{uvicorn_mailbox}",
        **uvicorn_env,
    }
    # A file, not a pipe: a pipe nobody reads fills up and stalls the server mid-test.
    log_path = tmp_path / "uvicorn.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            uvicorn_command(port),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(base + "/healthz", timeout=2)
            break
        except OSError:
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "uvicorn did not start: " + log_path.read_text()
            time.sleep(0.3)
    yield base
    process.terminate()
    process.wait(timeout=30)


# --- Personas -------------------------------------------------------------------------------


class World:
    """Account A with an owner, an admin, a developer, a finance member and a viewer; account B
    with its own owner (the stranger who must get nothing of A)."""

    def __init__(self):
        self.owner_a = make_user("owner@a.example")
        self.account_a = make_account(self.owner_a, name="Account A")
        self.admin_a = add_member(self.account_a, Role.ADMIN, make_user("admin@a.example"))
        self.developer_a = add_member(self.account_a, Role.DEVELOPER, make_user("dev@a.example"))
        self.finance_a = add_member(self.account_a, Role.FINANCE, make_user("fin@a.example"))
        self.viewer_a = add_member(self.account_a, Role.VIEWER, make_user("viewer@a.example"))
        self.owner_b = make_user("owner@b.example")
        self.account_b = make_account(self.owner_b, name="Account B")

    def user(self, persona: str):
        return {
            "owner_a": self.owner_a,
            "admin_a": self.admin_a.user,
            "developer_a": self.developer_a.user,
            "finance_a": self.finance_a.user,
            "viewer_a": self.viewer_a.user,
            "user_b": self.owner_b,
            "anonymous": None,
        }[persona]


@pytest.fixture
def world(db):
    return World()


@pytest.fixture
def login(client):
    """`login(user)` signs the test client in (None leaves it anonymous)."""

    def _login(user):
        if user is not None:
            client.force_login(user)
        return client

    return _login
