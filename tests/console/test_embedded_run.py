"""The processes of `make run` on the embedded default: web (uvicorn), Celery worker and beat
from Procfile.dev, with SQLite and the filesystem broker in a fresh var folder."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.embedded


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_web_worker_and_beat_run_on_the_embedded_default(tmp_path):
    if not (ROOT / ".venv" / "bin" / "uvicorn").exists():
        pytest.skip("needs the project's .venv (make test creates it)")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "DATABASE_TEST_TEMPLATE", "CELERY_BROKER_URL"}
    }
    env.update(CONSOLE_VAR_DIR=str(tmp_path), CONSOLE_IGNORE_DOTENV="1")
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120)
    seeded = subprocess.run(
        [*manage, "seed_demo"], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    email, password = seeded.stdout.strip().splitlines()[-1].split(": ")[1].split(" / ")
    port = _free_port()
    log = tmp_path / "run.log"
    with log.open("w") as output:
        processes = subprocess.Popen(
            [sys.executable, "-m", "honcho", "-f", "Procfile.dev", "start", "--port", str(port)],
            cwd=ROOT,
            env={
                **env,
                "STATICFILES_BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage",
            },
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline:
            try:
                status, _body = _get(f"{base}/accounts/login/")
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert status == 200, log.read_text()[-3000:]
        status, body = _get(f"{base}/readyz")
        assert status == 200 and json.loads(body)["status"] == "ok", body
        # The gateway answers on the embedded default (in-process limits, the simulator).
        created = subprocess.run(
            [*manage, "create_api_key", "--account", "1", "--project", "Smoke"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        raw_key = created.stdout.strip().splitlines()[-1]
        call = urllib.request.Request(
            f"{base}/api/paas/v4/chat/completions",
            data=json.dumps(
                {"model": "glm-4.7", "messages": [{"role": "user", "content": "你好"}]}
            ).encode(),
            headers={"Authorization": f"Bearer {raw_key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(call, timeout=30) as response:
            answer = json.loads(response.read())
        assert answer["choices"][0]["message"]["content"] and answer["usage"]["total_tokens"]
        # A job enqueued from another process reaches the worker through the filesystem broker.
        subprocess.run(
            [
                *manage,
                "shell",
                "-c",
                "from console.tasks import purge_old_invitations; purge_old_invitations.delay()",
            ],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=60,
        )
        deadline = time.monotonic() + 60
        while "purge_old_invitations deleted=" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            assert processes.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        assert "beat: Starting" in log.read_text()
        assert email == "demo@example.com" and password
    finally:
        os.killpg(processes.pid, signal.SIGTERM)
        processes.wait(timeout=30)
