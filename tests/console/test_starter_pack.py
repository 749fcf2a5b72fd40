"""The starter pack belongs to a person, once: the account their own sign-up created gets it
when they verify their email address. New accounts, invitations and staff never grant one, and
one person owns at most a few accounts (each account multiplies the tier's rate limits)."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from billing.models import LedgerEntry, ResourcePack
from console.models import Account, AuditEvent, Membership, User
from console.services import email_verification_token, invitation_create
from projects.models import Project
from tests.conftest import requires_postgres
from tests.console.test_personas import token_from_mail
from tests.factories import PASSWORD, login_verified, make_account, make_user
from tests.threads import run_together

pytestmark = pytest.mark.django_db

NEW_ACCOUNT = {"currency": "CNY", "time_zone": "Asia/Shanghai"}


def sign_up(client, email="li.wei@example.com", account_name="Wei Labs"):
    response = client.post(
        reverse("signup"),
        {
            "email": email,
            "name": "Li Wei",
            "password": "a-long-and-unusual-passphrase",
            "account_name": account_name,
            "currency": "CNY",
        },
    )
    assert response.status_code == 302
    user = User.objects.get(email=email)
    return user, Account.objects.get(memberships__user=user)


def starter_packs(**filters) -> int:
    return ResourcePack.objects.filter(source=ResourcePack.Source.STARTER, **filters).count()


def verify(client, user):
    return client.get(reverse("verify_email", args=[email_verification_token(user)]))


def test_the_sign_up_account_gets_its_pack_only_when_the_address_is_verified(client, settings):
    user, account = sign_up(client)
    assert starter_packs() == 0

    assert verify(client, user).status_code == 302

    pack = ResourcePack.objects.get(account=account)
    assert (pack.source, pack.tokens_total) == ("starter", settings.STARTER_PACK_TOKENS)
    assert LedgerEntry.objects.filter(account=account, kind="pack_grant").count() == 1


def test_verifying_twice_grants_one_pack(client):
    user, account = sign_up(client)
    verify(client, user)
    User.objects.filter(pk=user.pk).update(email_verified=False)  # even if it were unverified

    assert verify(client, user).status_code == 302
    assert verify(Client(), user).status_code == 302

    assert starter_packs(account=account) == 1
    assert LedgerEntry.objects.filter(account=account, kind="pack_grant").count() == 1


def test_three_accounts_of_one_person_hold_one_starter_pack(client):
    user, first = sign_up(client)
    for name in ("Second", "Third"):
        response = client.post(reverse("account_create"), {"name": name, **NEW_ACCOUNT})
        assert response.status_code == 302
    verify(client, user)
    for name in ("Fourth",):
        client.post(reverse("account_create"), {"name": name, **NEW_ACCOUNT})

    assert Membership.objects.filter(user=user, role="owner").count() == 4
    assert starter_packs() == 1
    assert starter_packs(account=first) == 1


def test_an_invitee_who_verifies_through_the_invitation_gets_no_pack(
    client, world, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        invitation_create(
            account=world.account_a,
            inviter=Membership.objects.get(user=world.owner_a),
            email="guest@example.com",
            role="developer",
        )
    token = token_from_mail(mailoutbox[-1])
    before = starter_packs()  # the world's accounts' own
    user, own_account = sign_up(client, email="guest@example.com", account_name="Guest Co")

    response = client.post(reverse("invitation_accept", args=[token]))

    assert response.status_code == 302
    user.refresh_from_db()
    assert user.email_verified
    # The link mailed at sign-up, followed afterwards, changes nothing either.
    verify(client, user)
    assert starter_packs(account=own_account) == 0
    assert starter_packs() == before


def test_staff_marking_an_address_verified_grants_no_pack(client):
    user, account = sign_up(client)
    staff = User.objects.create_superuser("root@example.com", PASSWORD)
    admin = login_verified(Client(), staff)
    page = admin.get(reverse("admin:console_user_change", args=[user.pk]))
    assert page.status_code == 200
    data = {
        "email": user.email,
        "name": user.name,
        "language": "",
        "email_verified": "on",
        "is_active": "on",
        "last_login_0": "",
        "last_login_1": "",
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
        "accounts_max": "",
    }

    response = admin.post(reverse("admin:console_user_change", args=[user.pk]), data)

    assert response.status_code == 302
    user.refresh_from_db()
    assert user.email_verified
    assert starter_packs() == 0


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_two_verifications_at_once_grant_one_pack():
    user, account = sign_up(Client())
    token = email_verification_token(user)

    def follow_the_link(_index):
        assert Client().get(reverse("verify_email", args=[token])).status_code == 302

    assert run_together(follow_the_link, 4) == []

    assert starter_packs(account=account) == 1
    assert LedgerEntry.objects.filter(account=account, kind="pack_grant").count() == 1


def test_create_account_grants_a_pack_only_when_asked():
    bare, packed = StringIO(), StringIO()
    call_command("create_account", "bare@example.com", "--password", "pw-bare-123", stdout=bare)
    call_command(
        "create_account",
        "packed@example.com",
        "--password",
        "pw-packed-123",
        "--starter-pack",
        stdout=packed,
    )

    bare_id = int(bare.getvalue().strip().splitlines()[-1])
    packed_id = int(packed.getvalue().strip().splitlines()[-1])
    assert starter_packs(account_id=bare_id) == 0
    assert starter_packs(account_id=packed_id) == 1


def test_the_demo_account_keeps_its_starter_pack():
    call_command("seed_demo", stdout=StringIO())
    assert starter_packs(account__name="Demo Team") == 1


# --- The cap on accounts one person owns ---------------------------------------------------


def test_the_sixth_account_is_refused_with_a_clear_message(client, settings):
    assert settings.ACCOUNTS_PER_OWNER_MAX == 5
    owner = make_user()
    for index in range(5):
        make_account(owner, name=f"Account {index}", starter_pack=False)
    client.force_login(owner)
    before = (Account.objects.count(), Project.objects.count(), AuditEvent.objects.count())

    response = client.post(reverse("account_create"), {"name": "Sixth", **NEW_ACCOUNT})

    assert response.status_code == 422
    assert "You can own at most 5 accounts" in response.content.decode()
    after = (Account.objects.count(), Project.objects.count(), AuditEvent.objects.count())
    assert after == before
    assert not Account.objects.filter(name="Sixth").exists()


def test_accounts_one_only_belongs_to_do_not_count(client):
    owner = make_user()
    for index in range(4):
        make_account(owner, name=f"Account {index}", starter_pack=False)
    for index in range(3):
        other = make_account(make_user(), name=f"Team {index}", starter_pack=False)
        Membership.objects.create(account=other, user=owner, role="admin")
    client.force_login(owner)

    response = client.post(reverse("account_create"), {"name": "Fifth", **NEW_ACCOUNT})

    assert response.status_code == 302
    assert Membership.objects.filter(user=owner, role="owner").count() == 5


def test_staff_raise_one_persons_limit_with_an_audit_event(client):
    owner = make_user("busy@example.com")
    for index in range(5):
        make_account(owner, name=f"Account {index}", starter_pack=False)
    staff = User.objects.create_superuser("root@example.com", PASSWORD)
    admin = login_verified(Client(), staff)
    data = {
        "email": owner.email,
        "name": "",
        "language": "",
        "email_verified": "on",
        "is_active": "on",
        "last_login_0": "",
        "last_login_1": "",
        "date_joined_0": owner.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": owner.date_joined.strftime("%H:%M:%S"),
        "accounts_max": "7",
    }

    response = admin.post(reverse("admin:console_user_change", args=[owner.pk]), data)

    assert response.status_code == 302
    event = AuditEvent.objects.get(action="user.accounts_max_change")
    assert (event.actor, event.actor_kind, event.target_id) == (staff, "staff", str(owner.pk))
    assert event.metadata == {"from": None, "to": 7}
    client.force_login(owner)
    assert (
        client.post(reverse("account_create"), {"name": "Sixth", **NEW_ACCOUNT}).status_code == 302
    )


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_creations_stay_within_the_cap():
    owner = make_user()
    for index in range(4):
        make_account(owner, name=f"Account {index}", starter_pack=False)

    def create(index):
        client = Client()
        client.force_login(owner)
        client.post(reverse("account_create"), {"name": f"Race {index}", **NEW_ACCOUNT})

    assert run_together(create, 4) == []

    assert Membership.objects.filter(user=owner, role="owner").count() == 5
