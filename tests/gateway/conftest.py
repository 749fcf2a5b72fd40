import pytest

from keys.services import api_key_create
from tests.billing.factories import funded_account

# `uvicorn_site` (the site under a real ASGI server) lives in tests/conftest.py: the browser
# journeys use it too.


@pytest.fixture(autouse=True)
def fresh_shared_state(fresh_shared_state):
    """Every gateway test starts with no rate windows, slots or reservations (tests/conftest.py)."""
    return fresh_shared_state


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
