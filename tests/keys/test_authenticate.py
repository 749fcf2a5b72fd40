from datetime import timedelta

import pytest
from django.utils import timezone

from console.models import Account
from keys.models import ApiKey
from keys.selectors import Authenticated, KeyRejected, api_key_authenticate
from keys.services import api_key_create, api_key_revoke, api_key_rotate
from projects.services import project_archive, project_create
from tests.factories import make_account, make_user

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


@pytest.fixture
def setup():
    owner = make_user()
    account = make_account(owner)
    project = project_create(account=account, name="App")
    created = api_key_create(account=account, project=project, label="app", actor=owner)
    return owner, account, project, created


def test_a_fresh_key_authenticates_to_its_key_project_and_account(setup):
    _owner, account, project, created = setup
    result = api_key_authenticate(created.raw)
    assert isinstance(result, Authenticated)
    assert (result.key.pk, result.project.pk, result.account.pk) == (
        created.key.pk,
        project.pk,
        account.pk,
    )


def test_the_key_has_the_documented_shape_and_only_a_hash_is_stored(setup):
    _owner, _account, _project, created = setup
    key_id, secret = created.raw.split(".")
    assert len(key_id) == 32 and len(secret) >= 22  # >= 128 bits in base64url
    row = ApiKey.objects.get(pk=created.key.pk)
    assert row.key_id == key_id and row.last4 == secret[-4:]
    assert secret not in row.secret_hash and len(row.secret_hash) == 64
    assert row.mask == "…" + secret[-4:]


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "nonsense",
        "a" * 32,
        "a" * 32 + ".",
        "A" * 32 + ".secretsecretsecret",
        "0" * 32 + ".bad secret with spaces",
        "0" * 32 + "." + "x" * 500,
    ],
)
def test_malformed_keys_are_refused_without_a_query(raw, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert api_key_authenticate(raw) == KeyRejected("malformed")


def test_an_unknown_id_or_a_wrong_secret_is_unknown(setup):
    _owner, _account, _project, created = setup
    key_id, secret = created.raw.split(".")
    assert api_key_authenticate("0" * 32 + "." + secret) == KeyRejected("unknown")
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert api_key_authenticate(f"{key_id}.{wrong}") == KeyRejected("unknown")


def test_authentication_is_one_query(setup, django_assert_num_queries):
    with django_assert_num_queries(1):
        assert isinstance(api_key_authenticate(setup[3].raw), Authenticated)


def test_revoked_expired_archived_and_suspended_are_refused_with_their_reason(setup):
    owner, account, project, created = setup
    other = api_key_create(
        account=account,
        project=project,
        label="soon",
        actor=owner,
        expires_at=timezone.now() + timedelta(seconds=30),
    )
    ApiKey.objects.filter(pk=other.key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert api_key_authenticate(other.raw) == KeyRejected("expired")

    Account.objects.filter(pk=account.pk).update(status="suspended")
    assert api_key_authenticate(created.raw) == KeyRejected("account_suspended")
    Account.objects.filter(pk=account.pk).update(status="active")

    project_archive(project=project, actor=owner)
    assert api_key_authenticate(created.raw) == KeyRejected("project_archived")

    api_key_revoke(key=created.key, actor=owner)
    assert api_key_authenticate(created.raw) == KeyRejected("revoked")


def test_rotation_with_grace_keeps_the_old_key_until_the_grace_ends(setup):
    owner, _account, _project, created = setup
    replacement = api_key_rotate(key=created.key, actor=owner, grace_seconds=3600)
    assert isinstance(api_key_authenticate(created.raw), Authenticated)
    assert isinstance(api_key_authenticate(replacement.raw), Authenticated)
    ApiKey.objects.filter(pk=created.key.pk).update(revoked_at=timezone.now())
    assert api_key_authenticate(created.raw) == KeyRejected("revoked")
    assert isinstance(api_key_authenticate(replacement.raw), Authenticated)


def test_rotation_without_grace_revokes_at_once(setup):
    owner, _account, _project, created = setup
    replacement = api_key_rotate(key=created.key, actor=owner, grace_seconds=0)
    assert api_key_authenticate(created.raw) == KeyRejected("revoked")
    key = replacement.key
    assert (key.label, key.project_id, key.scope) == ("app", created.key.project_id, "inference")


def test_keys_survive_a_pepper_rotation(setup, settings):
    _owner, _account, _project, created = setup
    settings.API_KEY_PEPPERS = {**settings.API_KEY_PEPPERS, 99: "a-brand-new-pepper-value"}
    assert isinstance(api_key_authenticate(created.raw), Authenticated)
    # Retiring the old pepper retires the keys hashed with it.
    settings.API_KEY_PEPPERS = {99: "a-brand-new-pepper-value"}
    assert api_key_authenticate(created.raw) == KeyRejected("unknown")
