import pytest

from console.shared_state import shared_state
from keys.services import api_key_create
from tests.billing.factories import funded_account


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
