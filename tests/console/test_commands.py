import json

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from console.models import Account, AuditEvent, Invitation, User
from projects.models import Project

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def run(*args) -> str:
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_seed_demo_is_idempotent_and_prints_a_working_login(settings, tmp_path, client):
    settings.VAR_DIR = tmp_path
    first = run("seed_demo")
    second = run("seed_demo")
    assert "Created demo account" in first
    assert "nothing created" in second
    assert User.objects.count() == 1 and Account.objects.count() == 1
    assert Project.objects.count() == 2
    assert Invitation.objects.count() == 1
    login_line = second.strip().splitlines()[-1]
    assert login_line == first.strip().splitlines()[-1]
    email, password = login_line.removeprefix("Demo login: ").split(" / ")
    assert json.loads((tmp_path / "demo-login.json").read_text())["password"] == password
    # Through the sign-in form: Client.login() calls authenticate() without a request, which
    # django-axes (the first authentication backend) refuses.
    signed_in = client.post(reverse("login"), {"username": email, "password": password})
    assert signed_in.status_code == 302 and client.get(reverse("overview")).status_code == 200


def test_create_account_prints_the_account_id_last():
    output = run(
        "create_account", "ops@example.com", "--password", "pw-for-ops-123", "--tier", "pro"
    )
    account_id = int(output.strip().splitlines()[-1])
    account = Account.objects.get(pk=account_id)
    assert account.tier.slug == "pro"
    user = User.objects.get(email="ops@example.com")
    assert user.email_verified and user.check_password("pw-for-ops-123")
    assert account.memberships.get(user=user).role == "owner"
    assert AuditEvent.objects.filter(account=account, actor_kind="system").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bad-address", "--password", "x"], "Invalid email"),
        (["ok@example.com", "--password", "x", "--tier", "platinum"], "Unknown tier"),
    ],
)
def test_create_account_refuses_bad_input(args, message):
    with pytest.raises(CommandError, match=message):
        run("create_account", *args)
    assert Account.objects.count() == 0


def test_create_account_refuses_an_existing_email():
    run("create_account", "dup@example.com", "--password", "pw-one-two-three")
    with pytest.raises(CommandError, match="already exists"):
        run("create_account", "DUP@example.com", "--password", "pw-one-two-three")
    assert Account.objects.count() == 1
