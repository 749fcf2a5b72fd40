import pytest
from django.test import Client
from django.urls import reverse

from console.models import Account, AuditEvent, Membership, User
from console.services import email_verification_token
from projects.models import Project
from tests.factories import make_user

pytestmark = pytest.mark.django_db

GOOD = {
    "email": "Li.Wei@Example.com",
    "name": "Li Wei",
    "password": "a-long-and-unusual-passphrase",
    "account_name": "Wei Labs",
    "currency": "USD",
}


def _counts():
    return (User.objects.count(), Account.objects.count(), Project.objects.count())


def test_it_creates_user_account_default_project_and_sends_verification(
    client, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("signup"), GOOD)
    assert response.status_code == 302
    user = User.objects.get()
    assert user.email == "li.wei@example.com"  # stored lower-cased
    assert not user.email_verified
    membership = Membership.objects.get(user=user)
    assert membership.role == "owner"
    account = membership.account
    assert (account.name, account.currency, account.time_zone) == (
        "Wei Labs",
        "USD",
        "Asia/Shanghai",
    )
    assert account.tier.slug == "free"
    default = Project.objects.get(account=account)
    assert default.is_default
    assert AuditEvent.objects.filter(account=account, action="account.create").exists()
    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["li.wei@example.com"]
    # Signed in straight away, with a notice to verify.
    page = client.get(reverse("overview"))
    assert "Verify your email address" in page.content.decode()


def test_the_verification_link_verifies(client):
    user = make_user("v@example.com", verified=False)
    response = client.get(reverse("verify_email", args=[email_verification_token(user)]))
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.email_verified


def test_a_tampered_verification_link_changes_nothing(client):
    user = make_user("v@example.com", verified=False)
    token = email_verification_token(user)
    response = client.get(reverse("verify_email", args=[token[:-2] + "xx"]))
    assert response.status_code == 400
    user.refresh_from_db()
    assert not user.email_verified


def test_the_link_stops_working_when_the_address_changes(client):
    user = make_user("old@example.com", verified=False)
    token = email_verification_token(user)
    User.objects.filter(pk=user.pk).update(email="new@example.com")
    assert client.get(reverse("verify_email", args=[token])).status_code == 400


def test_an_existing_email_is_refused_whatever_its_case(client):
    make_user("li.wei@example.com")
    before = _counts()
    response = client.post(reverse("signup"), GOOD)
    assert response.status_code == 422
    assert "already exists" in response.content.decode()
    assert _counts() == before


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short", "too short"),
        ("password123", "too common"),
        ("83749201384756", "entirely numeric"),
        ("li.wei@example.com", "too similar"),
    ],
)
def test_a_weak_password_is_refused(client, password, message):
    response = client.post(reverse("signup"), {**GOOD, "password": password})
    assert response.status_code == 422
    assert message in response.content.decode()
    assert _counts() == (0, 0, 0)


@pytest.mark.parametrize(
    "changes",
    [
        {"email": "not-an-email"},
        {"email": ""},
        {"account_name": ""},
        {"account_name": "x" * 101},
        {"currency": "EUR"},
        {"email": "a" * 250 + "@example.com"},
    ],
)
def test_invalid_fields_are_refused(client, changes):
    response = client.post(reverse("signup"), {**GOOD, **changes})
    assert response.status_code == 422
    assert _counts() == (0, 0, 0)


def test_a_missing_csrf_token_is_refused_and_creates_nothing():
    client = Client(enforce_csrf_checks=True)
    response = client.post(reverse("signup"), GOOD)
    assert response.status_code == 403
    assert "Nothing was changed" in response.content.decode()
    assert _counts() == (0, 0, 0)


def test_sign_in_and_out(client):
    make_user("in@example.com")
    response = client.post(
        reverse("login"),
        {"username": "IN@example.com", "password": "correct-horse-battery-staple-42"},
    )
    assert response.status_code == 302
    assert client.get(reverse("overview")).status_code in (200, 302)
    client.post(reverse("logout"))
    assert client.get(reverse("overview"))["Location"].startswith(reverse("login"))


def test_a_wrong_password_does_not_sign_in(client):
    make_user("in@example.com")
    response = client.post(reverse("login"), {"username": "in@example.com", "password": "nope"})
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_password_reset_sends_a_working_link(
    client, mailoutbox, django_capture_on_commit_callbacks
):
    user = make_user("reset@example.com")
    with django_capture_on_commit_callbacks(execute=True):  # the outbox sends on commit
        client.post(reverse("password_reset"), {"email": "reset@example.com"})
    assert len(mailoutbox) == 1
    link = next(line for line in mailoutbox[0].body.splitlines() if "/reset/" in line)
    path = link.split("://", 1)[1].split("/", 1)[1]
    page = client.get("/" + path, follow=True)
    assert page.status_code == 200
    new_password = "another-long-passphrase-77"
    response = client.post(
        page.redirect_chain[-1][0],
        {"new_password1": new_password, "new_password2": new_password},
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password(new_password)


def test_password_reset_for_an_unknown_address_says_the_same_and_sends_nothing(client, mailoutbox):
    response = client.post(reverse("password_reset"), {"email": "ghost@example.com"})
    assert response.status_code == 302
    assert mailoutbox == []


def test_password_change(client):
    user = make_user("change@example.com")
    client.force_login(user)
    response = client.post(
        reverse("password_change"),
        {
            "old_password": "correct-horse-battery-staple-42",
            "new_password1": "brand-new-passphrase-99",
            "new_password2": "brand-new-passphrase-99",
        },
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password("brand-new-passphrase-99")
