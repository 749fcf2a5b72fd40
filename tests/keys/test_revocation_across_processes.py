"""A key revoked through the console fails authentication on the next call made from another
process: the gateway's lookup has no cache that could outlive a revocation."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection
from django.urls import reverse

from keys.models import ApiKey
from keys.services import api_key_create
from tests.conftest import requires_postgres

ROOT = Path(__file__).resolve().parents[2]

# Another process: authenticate the key given on each line of stdin, print the outcome.
CHECKER = """
import sys, django
django.setup()
from keys.selectors import api_key_authenticate, Authenticated
for line in sys.stdin:
    result = api_key_authenticate(line.strip())
    print("ok" if isinstance(result, Authenticated) else result.reason, flush=True)
"""


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_a_revocation_is_seen_by_the_next_call_in_another_process(client, world):
    project = world.account_a.projects.get(is_default=True)
    raw = api_key_create(
        account=world.account_a, project=project, label="x", actor=world.owner_a
    ).raw
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@"
        f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
    }
    checker = subprocess.Popen(
        [sys.executable, "-c", CHECKER],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:

        def check() -> str:
            checker.stdin.write(raw + "\n")
            checker.stdin.flush()
            return checker.stdout.readline().strip()

        assert check() == "ok"
        assert check() == "ok"  # warm: whatever it could cache, it has seen the key twice
        client.force_login(world.owner_a)
        client.post(reverse("keys:revoke", args=[ApiKey.objects.get().pk]))
        assert check() == "revoked"
    finally:
        checker.stdin.close()
        checker.wait(timeout=30)
