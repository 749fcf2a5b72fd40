"""With Redis gone (cache, broker and the gateway's shared state all on a port nobody listens
on), console pages still serve, a card recharge that enqueues its confirmation still answers,
and the gateway refuses with 503 / 1240 as docs/api.md says.

The site runs in a subprocess (uvicorn) pointed at a closed port: the machine's own Redis is
shared and is never stopped by a test.
"""

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.urls import reverse

from billing.models import Payment
from keys.services import api_key_create
from tests import workers
from tests.billing.factories import funded_account
from tests.billing.test_payments import PENDING, add_card
from tests.conftest import requires_postgres

ROOT = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # released on close: nobody listens there


@pytest.fixture
def site_without_redis():
    dead = f"redis://127.0.0.1:{closed_port()}/0"
    port = closed_port()
    env = {
        **os.environ,
        "DATABASE_URL": workers.test_database_url(),
        "REDIS_URL": dead,
        "CELERY_BROKER_URL": dead,
        "SHARED_STATE_BACKEND": "redis",
        "STATICFILES_BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage",
        "SANDBOX_PENDING_SECONDS": "30",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "config.asgi:application", "--port", str(port)],
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
            httpx.get(base + "/healthz", timeout=2)
            break
        except httpx.TransportError:
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.3)
    output: list[str] = []
    yield base, output
    process.terminate()
    output.append(process.communicate(timeout=30)[0])


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_console_and_gateway_without_redis(site_without_redis, client):
    base, output = site_without_redis
    account = funded_account(recharge_units=100)
    owner = account.memberships.get().user
    card = add_card(account, PENDING)
    raw = api_key_create(
        account=account, project=account.projects.get(is_default=True), label="k", actor=None
    ).raw
    client.force_login(owner)  # a database session, valid in the server process too
    session = client.cookies["sessionid"].value

    with httpx.Client(base_url=base, cookies={"sessionid": session}, timeout=30) as browser:
        for name in ("overview", "usage:index", "billing:index", "keys:list", "billing:recharge"):
            response = browser.get(reverse(name))
            assert response.status_code == 200, f"{name}: {response.status_code}"

        # A paying action whose confirmation task cannot be enqueued: recorded, no 500; the
        # pending-payment sweep settles it once the worker runs again.
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.text)[1]
        response = browser.post(
            reverse("billing:recharge_start"),
            data={"amount": "50", "method": f"card:{card.pk}", "csrfmiddlewaretoken": token},
            headers={"Referer": base + reverse("billing:recharge")},
        )
        assert response.status_code == 302, response.text[:500]
        assert Payment.objects.get(account=account, method="card").status == "pending"

        # An export whose build task cannot be enqueued: the request is recorded, no 500.
        response = browser.post(
            reverse("history:export_start"),
            data={"range": "7d", "format": "csv", "csrfmiddlewaretoken": token},
        )
        assert response.status_code == 302, response.text[:500]

        # The gateway: the rate-limit store is unavailable (docs/api.md, code 1240).
        response = browser.post(
            "/api/paas/v4/chat/completions",
            headers={"Authorization": f"Bearer {raw}"},
            json={"model": "glm-4.7", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "1240"

        # Readiness: the database is there, so the node stays in the balancer, degraded.
        ready = browser.get("/readyz")
        assert ready.status_code == 200
        checks = ready.json()["checks"]
        assert ready.json()["status"] == "degraded"
        assert (checks["database"]["ok"], checks["cache"]["ok"], checks["broker"]["ok"]) == (
            True,
            False,
            False,
        )
