import threading

import pytest
from django.db import connection
from django.urls import reverse

from console.models import AuditEvent, Invitation, Membership
from console.roles import Role
from console.services import ServiceError, membership_change_role
from tests.conftest import requires_postgres
from tests.console.test_personas import token_from_mail
from tests.factories import add_member, make_account, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def invite(client, world, mailoutbox, django_capture_on_commit_callbacks):
    """Invite as A's owner; returns (response, token or None)."""

    def _invite(email, role="developer", **extra):
        client.force_login(world.owner_a)
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                reverse("member_invite"), {"email": email, "role": role}, **extra
            )
        token = token_from_mail(mailoutbox[-1]) if mailoutbox else None
        return response, token

    return _invite


def test_an_invitation_is_emailed_and_accepted_by_the_invited_address(client, world, invite):
    response, token = invite("New.Person@Example.com", "finance")
    assert response.status_code == 302
    invitation = Invitation.objects.get(email="new.person@example.com")
    assert invitation.token_hash != token  # only a hash is stored
    newcomer = make_user("new.person@example.com", verified=False)
    client.force_login(newcomer)
    assert "Account A" in client.get(reverse("invitation_accept", args=[token])).content.decode()
    response = client.post(reverse("invitation_accept", args=[token]))
    assert response.status_code == 302
    membership = Membership.objects.get(user=newcomer, account=world.account_a)
    assert membership.role == "finance"
    newcomer.refresh_from_db()
    assert newcomer.email_verified  # the link reached that address
    assert AuditEvent.objects.filter(action="member.join", account=world.account_a).exists()
    # Used once: a second acceptance is refused.
    assert client.post(reverse("invitation_accept", args=[token])).status_code == 400


def test_a_forwarded_invitation_cannot_be_used_by_another_address(client, world, invite):
    _response, token = invite("invited@example.com")
    client.force_login(world.owner_b)
    response = client.post(reverse("invitation_accept", args=[token]))
    assert response.status_code == 400
    assert "invited@example.com" in response.content.decode()
    assert not Membership.objects.filter(user=world.owner_b, account=world.account_a).exists()


def test_an_unknown_token_is_404(client, world):
    client.force_login(world.owner_b)
    assert client.get(reverse("invitation_accept", args=["nope"])).status_code == 404


def test_a_revoked_invitation_cannot_be_accepted(client, world, invite):
    _response, token = invite("late@example.com")
    invitation = Invitation.objects.get(email="late@example.com")
    client.post(reverse("invitation_revoke", args=[invitation.pk]))
    late = make_user("late@example.com")
    client.force_login(late)
    assert client.post(reverse("invitation_accept", args=[token])).status_code == 400
    assert not Membership.objects.filter(user=late).exists()


@pytest.mark.parametrize(
    "email", ["not-an-address", "", "a@", "@b.com", "x" * 250 + "@e.com", "a@b.com\nBcc: x@y.z"]
)
def test_an_invite_to_an_invalid_address_is_refused_and_nothing_is_sent(
    world, invite, mailoutbox, email
):
    response, _token = invite(email)
    assert response.status_code == 422
    assert Invitation.objects.count() == 0
    assert mailoutbox == []


def test_inviting_a_member_again_is_refused(world, invite):
    response, _token = invite("dev@a.example")
    assert response.status_code == 422
    assert "already a member" in response.content.decode()


def test_reinviting_replaces_the_open_invitation(world, invite):
    _r, first = invite("again@example.com")
    _r, second = invite("again@example.com")
    assert first != second
    open_ones = Invitation.objects.filter(email="again@example.com", revoked_at__isnull=True)
    assert open_ones.count() == 1


def test_an_unverified_owner_cannot_invite(client, world, mailoutbox):
    world.owner_a.email_verified = False
    world.owner_a.save()
    client.force_login(world.owner_a)
    response = client.post(reverse("member_invite"), {"email": "x@example.com", "role": "viewer"})
    assert response.status_code == 422
    assert Invitation.objects.count() == 0


def test_an_admin_cannot_invite_an_owner(client, world):
    client.force_login(world.admin_a.user)
    response = client.post(reverse("member_invite"), {"email": "boss@example.com", "role": "owner"})
    assert response.status_code == 422
    assert Invitation.objects.count() == 0


def test_the_invite_form_answers_htmx_with_the_region_only(client, world, invite):
    response, _token = invite("htmx@example.com", HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 200
    assert 'id="members-region"' in body and "<html" not in body
    assert "htmx@example.com" in body


def test_change_role(client, world):
    client.force_login(world.owner_a)
    client.post(reverse("member_role", args=[world.developer_a.pk]), {"role": "admin"})
    world.developer_a.refresh_from_db()
    assert world.developer_a.role == "admin"
    event = AuditEvent.objects.get(action="member.role_change")
    assert event.metadata["from"] == "developer" and event.metadata["to"] == "admin"


def test_an_invalid_role_changes_nothing(client, world):
    client.force_login(world.owner_a)
    client.post(reverse("member_role", args=[world.developer_a.pk]), {"role": "superuser"})
    world.developer_a.refresh_from_db()
    assert world.developer_a.role == "developer"


def test_an_admin_cannot_demote_an_owner(client, world):
    client.force_login(world.admin_a.user)
    owner = Membership.objects.get(user=world.owner_a)
    client.post(reverse("member_role", args=[owner.pk]), {"role": "viewer"})
    owner.refresh_from_db()
    assert owner.role == "owner"


def test_the_last_owner_can_be_neither_demoted_nor_removed(client, world):
    owner = Membership.objects.get(user=world.owner_a)
    client.force_login(world.owner_a)
    response = client.post(reverse("member_role", args=[owner.pk]), {"role": "admin"}, follow=True)
    assert "last owner cannot be demoted" in response.content.decode()
    response = client.post(reverse("member_remove", args=[owner.pk]), follow=True)
    assert "last owner cannot be removed" in response.content.decode()
    owner.refresh_from_db()
    assert owner.role == "owner"


def test_with_two_owners_one_may_step_down(client, world):
    second = add_member(world.account_a, Role.OWNER)
    client.force_login(world.owner_a)
    mine = Membership.objects.get(user=world.owner_a)
    client.post(reverse("member_role", args=[mine.pk]), {"role": "developer"})
    mine.refresh_from_db()
    assert mine.role == "developer"
    second.refresh_from_db()
    assert second.role == "owner"


def test_remove_asks_first_then_removes(client, world):
    client.force_login(world.owner_a)
    url = reverse("member_remove", args=[world.finance_a.pk])
    page = client.get(url)
    assert page.status_code == 200 and "will lose access" in page.content.decode()
    assert Membership.objects.filter(pk=world.finance_a.pk).exists()
    client.post(url)
    assert not Membership.objects.filter(pk=world.finance_a.pk).exists()
    assert AuditEvent.objects.filter(action="member.remove").exists()


def test_a_member_can_leave(client, world):
    client.force_login(world.finance_a.user)
    client.post(reverse("member_remove", args=[world.finance_a.pk]))
    assert not Membership.objects.filter(pk=world.finance_a.pk).exists()
    assert AuditEvent.objects.filter(action="member.leave").exists()


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_two_owners_demoting_each_other_at_once_leave_one_owner():
    """Both see another owner; the owner-row locks make the second one wait and fail."""
    account = make_account(make_user("o1@example.com"))
    first = Membership.objects.get(account=account)
    second = add_member(account, Role.OWNER, make_user("o2@example.com"))
    barrier = threading.Barrier(2)
    errors = []

    def demote(target, actor):
        try:
            barrier.wait()
            membership_change_role(membership=target, role=Role.ADMIN, actor=actor)
        except ServiceError as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=demote, args=(first, second)),
        threading.Thread(target=demote, args=(second, first)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    owners = Membership.objects.filter(account=account, role=Role.OWNER).count()
    assert owners == 1
    assert len(errors) == 1
