"""Staff set up two-factor authentication only with a one-time link (issue 20, item 8).

The password alone must not enrol an authenticator app on a staff user, or whoever leaked it
would add their own app. The first staff page after the password says a link was emailed (and
that a superuser can print one); the link works once, for its user, until it expires, and only
its keyed hash is stored."""

import io
import re
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from console import two_factor
from console.models import AuditEvent, AuthenticatorApp, RecoveryCodeSet, StaffTwoFactorLink
from tests.console.test_two_factor import current_code, sign_in
from tests.factories import PASSWORD, make_user

pytestmark = pytest.mark.django_db

ADMIN = reverse("admin:index")


@pytest.fixture
def staff():
    return make_user("staff@example.com", is_staff=True, is_superuser=True)


@pytest.fixture
def emailed_link(client, staff, mailoutbox, django_capture_on_commit_callbacks):
    """The link the first staff page after the password emails, as a path."""
    sign_in(client, staff)
    with django_capture_on_commit_callbacks(execute=True):
        client.get(ADMIN, follow=True)
    return link_path(mailoutbox[-1].body)


def link_path(text: str) -> str:
    url = re.search(r"https?://\S+/account/security/staff-link/\S+/", text).group(0)
    return re.sub(r"^https?://[^/]+", "", url)


def enrol(client, staff):
    """Set up the app on the page the link opened: the QR code's device, its current code."""
    page = client.get(reverse("two_factor_setup"), {"next": ADMIN})
    assert page.status_code == 200
    device = AuthenticatorApp.objects.get(user=staff, confirmed=False)
    return client.post(reverse("two_factor_setup"), {"code": current_code(device), "next": ADMIN})


def test_staff_with_only_a_password_cannot_reach_the_enrolment_form(client, staff):
    sign_in(client, staff)

    page = client.get(reverse("two_factor_setup"), follow=True)
    posted = client.post(reverse("two_factor_setup"), {"code": "123456"})

    assert page.redirect_chain[0][0] == reverse("two_factor_staff_link")
    html = page.content.decode()
    assert "qr-code" not in html and "Type this key" not in html
    assert "A link was sent to staff@example.com" in html
    assert "manage.py staff_two_factor_link staff@example.com" in html
    assert posted["Location"] == reverse("two_factor_staff_link")
    assert not AuthenticatorApp.objects.filter(user=staff).exists()  # no key was even made
    assert client.get(ADMIN).status_code == 302


def test_the_first_staff_page_emails_one_link_to_the_staff_address(
    client, staff, mailoutbox, django_capture_on_commit_callbacks
):
    sign_in(client, staff)
    with django_capture_on_commit_callbacks(execute=True):
        client.get(ADMIN, follow=True)
        client.get(reverse("staff_jobs"), follow=True)  # the link already out is not resent

    assert [message.to for message in mailoutbox] == [["staff@example.com"]]
    token = link_path(mailoutbox[0].body).rstrip("/").rsplit("/", 1)[-1]
    link = StaffTwoFactorLink.objects.get(user=staff)
    assert link.via == "email" and link.used_at is None
    event = AuditEvent.objects.get(action="user.two_factor_link_issue")
    assert event.target_id == str(staff.pk) and event.metadata["via"] == "email"
    # Only a keyed hash is stored: the token is in no column of the row.
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM console_stafftwofactorlink")
        (row,) = cursor.fetchall()
    assert token not in " ".join(str(value) for value in row)


def test_with_the_emailed_link_staff_enrol_and_reach_the_back_office(client, staff, emailed_link):
    opened = client.get(emailed_link)
    assert opened["Location"] == f"{reverse('two_factor_setup')}?next={ADMIN}"

    done = enrol(client, staff)

    assert done.status_code == 200 and f'href="{ADMIN}"' in done.content.decode()
    assert two_factor.two_factor_enabled(user=staff)
    assert client.get(ADMIN).status_code == 200
    link = StaffTwoFactorLink.objects.get(user=staff)
    assert link.used_at is not None
    event = AuditEvent.objects.get(action="user.two_factor_enable", actor=staff)
    assert event.metadata == {"staff_link": link.pk}


def test_a_link_opened_while_signed_out_works_after_the_password(staff, emailed_link):
    browser = Client()
    to_sign_in = browser.get(emailed_link)
    assert to_sign_in["Location"].startswith(reverse("login"))

    back = browser.post(
        to_sign_in["Location"],
        {"username": staff.email, "password": PASSWORD, "next": emailed_link},
    )
    assert back["Location"] == emailed_link
    assert browser.get(emailed_link)["Location"].startswith(reverse("two_factor_setup"))
    assert enrol(browser, staff).status_code == 200
    assert browser.get(ADMIN).status_code == 200


def test_a_used_link_is_refused(client, staff, emailed_link):
    client.get(emailed_link)
    enrol(client, staff)
    # Staff reset the lost phone; the old link must not set a new app up.
    AuthenticatorApp.objects.filter(user=staff).delete()
    RecoveryCodeSet.objects.filter(user=staff).delete()
    stranger = Client()
    sign_in(stranger, staff)

    refused = stranger.get(emailed_link)

    assert refused.status_code == 410
    assert "already used or has expired" in refused.content.decode()
    assert stranger.get(reverse("two_factor_setup"))["Location"] == reverse("two_factor_staff_link")
    event = AuditEvent.objects.get(action="user.two_factor_link_refuse")
    assert event.metadata["reason"] == "used"


def test_an_expired_link_is_refused(client, staff, emailed_link):
    StaffTwoFactorLink.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    refused = client.get(emailed_link)

    assert refused.status_code == 410
    assert client.get(reverse("two_factor_setup"))["Location"] == reverse("two_factor_staff_link")
    assert not AuthenticatorApp.objects.filter(user=staff).exists()


def test_a_link_that_expires_after_it_was_opened_no_longer_enrols(client, staff, emailed_link):
    client.get(emailed_link)
    device = AuthenticatorApp.objects.create(user=staff, name="authenticator app", confirmed=False)
    StaffTwoFactorLink.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    response = client.post(reverse("two_factor_setup"), {"code": current_code(device)})

    assert response["Location"] == reverse("two_factor_staff_link")
    assert not two_factor.two_factor_enabled(user=staff)


def test_another_users_link_is_refused(staff, emailed_link):
    other = make_user("other-staff@example.com", is_staff=True)
    browser = Client()
    sign_in(browser, other)

    refused = browser.get(emailed_link)

    assert refused.status_code == 404
    assert browser.get(reverse("two_factor_setup"))["Location"] == reverse("two_factor_staff_link")
    event = AuditEvent.objects.get(action="user.two_factor_link_refuse")
    assert event.actor == other and event.metadata["reason"] == "other_user"
    # Still good for the staff member it was made for.
    owner = Client()
    sign_in(owner, staff)
    assert owner.get(emailed_link)["Location"].startswith(reverse("two_factor_setup"))


def test_an_unknown_link_is_a_404(client, staff):
    sign_in(client, staff)
    url = reverse("two_factor_staff_link_open", args=["not-a-link"])
    assert client.get(url).status_code == 404
    assert client.get(reverse("two_factor_setup"))["Location"] == reverse("two_factor_staff_link")


def test_the_command_prints_a_working_link_and_replaces_the_emailed_one(
    client, staff, emailed_link
):
    out = io.StringIO()
    call_command("staff_two_factor_link", "STAFF@example.com", stdout=out)

    printed = link_path(out.getvalue())
    assert client.get(emailed_link).status_code == 410  # one link at a time
    assert client.get(printed)["Location"].startswith(reverse("two_factor_setup"))
    assert enrol(client, staff).status_code == 200
    assert client.get(ADMIN).status_code == 200
    event = AuditEvent.objects.filter(action="user.two_factor_link_issue").latest("pk")
    assert event.metadata["via"] == "command" and event.actor_kind == "system"


def test_the_command_refuses_people_who_are_not_staff_or_already_enrolled(staff):
    make_user("someone@example.com")
    with pytest.raises(CommandError, match="Only active staff"):
        call_command("staff_two_factor_link", "someone@example.com", stdout=io.StringIO())
    with pytest.raises(CommandError, match="No user"):
        call_command("staff_two_factor_link", "nobody@example.com", stdout=io.StringIO())
    AuthenticatorApp.objects.create(user=staff, name="app", confirmed=True)
    with pytest.raises(CommandError, match="already has two-factor"):
        call_command("staff_two_factor_link", staff.email, stdout=io.StringIO())


def test_people_who_are_not_staff_still_set_up_two_factor_with_their_password(client):
    user = make_user("person@example.com")
    sign_in(client, user)
    page = client.get(reverse("two_factor_setup"))
    assert page.status_code == 200 and "qr-code" in page.content.decode()
    assert client.get(reverse("two_factor_staff_link")).status_code == 404
