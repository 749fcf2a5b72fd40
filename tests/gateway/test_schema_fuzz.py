"""Schema-driven fuzzing of the documented API (issue 12, part 4).

schemathesis reads docs/openapi.yaml and generates requests for every operation: valid ones
and ones that break the schema (wrong types, missing fields, odd methods), sent in-process
with real keys. Every answer must be a status the document lists for the operation, never a
5xx, in the documented shape (BigModel's error body on a 4xx); a refused request is never
charged, and no concurrency slot or reservation is left behind.

Hand-written hostile bodies (10,000 levels deep, NUL, invalid UTF-8, CR/LF in request_id)
are tests/console/test_hostile_input.py.
"""

from pathlib import Path

import pytest
import schemathesis
from django.test.client import ClientHandler
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from billing.models import LedgerEntry, Wallet
from console.shared_state import concurrency_key, reservation_keys
from keys.models import Scope
from keys.services import api_key_create
from tests.billing.factories import funded_account

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
# Examples per operation and generation mode (valid, invalid): about 550 requests, ~15 s.
MAX_EXAMPLES = 40

pytestmark = pytest.mark.filterwarnings(
    # A streamed answer is read to its end here, synchronously, as the test client does.
    "ignore:StreamingHttpResponse must consume asynchronous iterators:Warning"
)

_handler = ClientHandler(enforce_csrf_checks=False)


def site(environ, start_response):
    """The site as a WSGI application, through Django's test handler: unlike the plain
    WSGIHandler it keeps the test's database connection (and its transaction) between
    requests, and streamed answers are read to the end."""
    response = _handler(environ)
    content = b"".join(response) if response.streaming else response.content
    start_response(f"{response.status_code} {response.reason_phrase}", list(response.items()))
    return [content]


schema = schemathesis.openapi.from_path(SPEC)
schema.app = site
schema.config.generation.update(max_examples=MAX_EXAMPLES)

CHECKS = [
    status_code_conformance,  # a status the operation documents
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,  # 4xx included: {"error": {"code", "message"}}
]


@pytest.fixture
def api_keys(db, fresh_shared_state, settings):
    """A funded account with an inference key and an admin-read key (the usage API's)."""
    settings.SIMULATOR_FIRST_TOKEN_MS = 0
    settings.SIMULATOR_CHUNK_MS = 0
    account = funded_account(recharge_units=1000)
    project = account.projects.get(is_default=True)
    inference = api_key_create(account=account, project=project, label="fuzz", actor=None).raw
    reader = api_key_create(
        account=account, project=project, label="read", scope=Scope.ADMIN_READ, actor=None
    ).raw
    return account, {"inference": inference, "admin-read": reader}, fresh_shared_state


def _money(account) -> tuple:
    wallet = Wallet.objects.get(account=account)
    entries = LedgerEntry.objects.filter(account=account).count()
    return entries, wallet.recharge_nano, wallet.bonus_nano, wallet.arrears_nano


@schema.parametrize()
@hypothesis_settings(
    deadline=None,
    derandomize=True,  # the same requests every run: CI is stable, a failure reproducible
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_every_documented_operation_answers_as_documented(case, api_keys):
    account, keys, state = api_keys
    key = keys["admin-read"] if case.path.startswith("/api/console/") else keys["inference"]
    before = _money(account)
    response = case.call(headers={"Authorization": f"Bearer {key}"})
    assert response.status_code < 500, response.content[:300]
    case.validate_response(response, checks=CHECKS)
    if response.status_code >= 400:
        assert _money(account) == before, "a refused request moved money"
    held, _project = reservation_keys(account_id=account.pk, project_id=0)
    assert state.slot_count(concurrency_key(account.pk)) == 0 and state.held(held) == 0
