"""The procedure of docs/security.md ("Rotating the API key pepper"), step by step: keys made
under pepper 1 keep working once API_KEY_PEPPERS is "2:new,1:old"; new and rotated keys use
version 2; `pepper_status` counts what still needs version 1; once nothing does, version 1
leaves the environment and every usable key still works."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from keys.models import ApiKey
from keys.selectors import Authenticated, KeyRejected, api_key_authenticate
from keys.services import api_key_create, api_key_revoke, api_key_rotate
from tests.factories import make_account, make_user

pytestmark = pytest.mark.django_db

OLD = "the-old-pepper-kept-apart-from-the-database"
NEW = "the-new-pepper-kept-apart-from-the-database"


def pepper_status(*args) -> str:
    out = StringIO()
    call_command("pepper_status", *args, stdout=out)
    return out.getvalue()


def works(raw: str) -> bool:
    return isinstance(api_key_authenticate(raw), Authenticated)


@pytest.fixture
def owner():
    return make_user("keys@example.com")


@pytest.fixture
def account(owner):
    return make_account(owner, name="Rotating Co")


def new_key(account, owner, label):
    return api_key_create(
        account=account, project=account.projects.get(is_default=True), label=label, actor=owner
    )


def test_rotating_the_pepper_keeps_every_key_working(settings, account, owner):
    # Before: one pepper, version 1.
    settings.API_KEY_PEPPERS = {1: OLD}
    first = new_key(account, owner, "first")
    second = new_key(account, owner, "second")
    retired = new_key(account, owner, "retired")
    api_key_revoke(key=retired.key, actor=owner)
    assert {first.key.pepper_version, second.key.pepper_version} == {1}

    # Step 1: API_KEY_PEPPERS="2:new,1:old". Old keys verify; new keys use version 2.
    settings.API_KEY_PEPPERS = {2: NEW, 1: OLD}
    assert works(first.raw) and works(second.raw)
    third = new_key(account, owner, "third")
    assert third.key.pepper_version == 2 and works(third.raw)
    status = pepper_status("--accounts")
    assert "pepper 2: 1 usable key (current" in status
    assert "pepper 1: 2 usable keys (still needed" in status  # the revoked one is not counted
    assert f"account {account.pk} 'Rotating Co': 2 keys" in status

    # Step 2: the owners rotate their keys; the replacements use version 2. A grace period
    # keeps the old key usable (and counted) until it ends.
    replacement = api_key_rotate(key=first.key, actor=owner)
    assert replacement.key.pepper_version == 2 and works(replacement.raw)
    assert api_key_authenticate(first.raw) == KeyRejected("revoked")
    graced = api_key_rotate(key=second.key, actor=owner, grace_seconds=3600)
    assert works(second.raw) and works(graced.raw)
    assert "pepper 1: 1 usable key (still needed" in pepper_status()
    ApiKey.objects.filter(pk=second.key.pk).update(
        revoked_at=timezone.now() - timedelta(seconds=1)
    )  # the grace period is over
    status = pepper_status()
    assert "pepper 1: 0 usable keys (no usable key needs it" in status
    assert "pepper 2: 3 usable keys (current" in status

    # Step 3: version 1 leaves the environment. Every usable key still works.
    settings.API_KEY_PEPPERS = {2: NEW}
    for key in ApiKey.objects.filter(ApiKey.usable_q(timezone.now())):
        assert key.pepper_version == 2
    assert works(third.raw) and works(replacement.raw) and works(graced.raw)
    assert "pepper 1" not in pepper_status()


def test_removing_a_pepper_too_early_is_reported(settings, account, owner):
    settings.API_KEY_PEPPERS = {1: OLD}
    early = new_key(account, owner, "early")
    settings.API_KEY_PEPPERS = {2: NEW}

    assert api_key_authenticate(early.raw) == KeyRejected("unknown")
    with pytest.raises(CommandError, match=r"pepper version\(s\) \[1\] missing"):
        pepper_status()
    # Putting it back repairs it: nothing was lost but the variable.
    settings.API_KEY_PEPPERS = {2: NEW, 1: OLD}
    assert works(early.raw)
    assert "pepper 1: 1 usable key (still needed" in pepper_status()
