"""Settings come from the environment; no variables at all is the embedded default."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.embedded


def _clean_env(**extra) -> dict:
    keep = {"PATH", "HOME", "LANG", "LC_ALL", "SYSTEMROOT"}
    env = {key: value for key, value in os.environ.items() if key in keep}
    env.update(CONSOLE_IGNORE_DOTENV="1", **extra)
    return env


def _python(code: str, env: dict) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_no_variables_at_all_is_the_embedded_default(tmp_path):
    code = """
import django, json
django.setup()
from django.conf import settings
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("PRAGMA journal_mode")
    journal = cursor.fetchone()[0]
print(json.dumps({
    "engine": settings.DATABASES["default"]["ENGINE"],
    "journal": journal,
    "transaction_mode": settings.DATABASES["default"]["OPTIONS"]["transaction_mode"],
    "broker": settings.CELERY_BROKER_URL,
    "state": settings.SHARED_STATE_BACKEND,
    "cache": settings.CACHES["default"]["BACKEND"],
    "secret": settings.SECRET_KEY,
}))
"""
    import json

    env = _clean_env(DJANGO_SETTINGS_MODULE="config.settings", CONSOLE_VAR_DIR=str(tmp_path))
    first = json.loads(_python(code, env))
    assert first["engine"] == "django.db.backends.sqlite3"
    assert first["journal"] == "wal"
    assert first["transaction_mode"] == "IMMEDIATE"
    assert first["broker"] == "filesystem://"
    assert first["state"] == "local"
    assert first["cache"].endswith("LocMemCache")
    # Generated once into an untracked file, then reused: sessions and keys survive restarts.
    secrets_file = tmp_path / "local-secrets.json"
    assert secrets_file.exists() and oct(secrets_file.stat().st_mode)[-3:] == "600"
    assert json.loads(_python(code, env))["secret"] == first["secret"]


def test_database_and_redis_urls_switch_to_postgres_pool_and_redis(tmp_path):
    code = """
import django, json
django.setup()
from django.conf import settings
db = settings.DATABASES["default"]
print(json.dumps({"engine": db["ENGINE"], "pool": db["OPTIONS"]["pool"]["max_size"],
    "cache": settings.CACHES["default"]["BACKEND"], "broker": settings.CELERY_BROKER_URL,
    "state": settings.SHARED_STATE_BACKEND}))
"""
    import json

    env = _clean_env(
        DJANGO_SETTINGS_MODULE="config.settings",
        CONSOLE_VAR_DIR=str(tmp_path),
        DATABASE_URL="postgres://u:p@db.invalid:5432/console",
        DATABASE_POOL_MAX_SIZE="7",
        REDIS_URL="redis://cache.invalid:6379/0",
    )
    values = json.loads(_python(code, env))
    assert values == {
        "engine": "django.db.backends.postgresql",
        "pool": 7,
        "cache": "django.core.cache.backends.redis.RedisCache",
        "broker": "redis://cache.invalid:6379/0",
        "state": "redis",
    }


def test_the_production_example_passes_check_deploy(tmp_path):
    example = ROOT / ".env.production.example"
    values = dict(
        line.split("=", 1)
        for line in example.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    env = _clean_env(CONSOLE_VAR_DIR=str(tmp_path), **values)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_variable_read_by_settings_is_documented_in_env_example():
    import re

    source = (ROOT / "config" / "settings.py").read_text()
    read = set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z_]+)"', source))
    documented = set(re.findall(r"^#?\s*([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert read - documented == set(), f"undocumented variables: {read - documented}"


@pytest.mark.parametrize(
    "value", ["secret-without-version", "x:long-enough-secret-value", "1:short"]
)
def test_a_malformed_pepper_list_stops_start_up_with_a_clear_message(tmp_path, value):
    env = _clean_env(
        DJANGO_SETTINGS_MODULE="config.settings",
        CONSOLE_VAR_DIR=str(tmp_path),
        SECRET_KEY="x" * 50,
        API_KEY_PEPPERS=value,
    )
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "API_KEY_PEPPERS must look like" in result.stderr


def test_peppers_are_read_by_version(tmp_path):
    env = _clean_env(
        DJANGO_SETTINGS_MODULE="config.settings",
        CONSOLE_VAR_DIR=str(tmp_path),
        SECRET_KEY="x" * 50,
        API_KEY_PEPPERS="2:the-new-pepper-value,1:the-old-pepper-value",
    )
    code = "import django; django.setup(); from django.conf import settings; "
    code += "print(sorted(settings.API_KEY_PEPPERS.items()))"
    assert _python(code, env) == "[(1, 'the-old-pepper-value'), (2, 'the-new-pepper-value')]"
    assert not (tmp_path / "local-secrets.json").exists()  # nothing generated when both are set


def test_the_filesystem_broker_keeps_its_runtime_files_in_the_var_folder(tmp_path):
    # kombu's filesystem transport wrote its exchange tables to `control/` under the working
    # directory: `make run` left control/celery.exchange and celery.pidbox.exchange at the top
    # of the checkout, where they were committed.
    code = """
import django
django.setup()
from config.celery import app
from console.tasks import purge_old_invitations
purge_old_invitations.delay()
app.control.ping(timeout=0.1)
"""
    var, cwd = tmp_path / "var", tmp_path / "cwd"
    cwd.mkdir()
    env = _clean_env(
        DJANGO_SETTINGS_MODULE="config.settings", CONSOLE_VAR_DIR=str(var), PYTHONPATH=str(ROOT)
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert list(cwd.iterdir()) == []
    # The task's exchange and the broadcast's reply exchange (a worker adds celery.pidbox).
    exchanges = {path.name for path in (var / "celery-control").iterdir()}
    assert {"celery.exchange", "reply.celery.pidbox.exchange"} <= exchanges
