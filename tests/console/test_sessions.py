"""Sessions around signing in and out: no fixation, a flushed sign-out, and a password change
that signs out every other browser but not this one."""

import pytest
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client
from django.urls import reverse

from tests.factories import PASSWORD, make_account, make_user

pytestmark = pytest.mark.django_db


def _session_key(client) -> str:
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def _sign_in(client, email: str, password: str = PASSWORD):
    return client.post(reverse("login"), {"username": email, "password": password})


def test_signing_in_through_the_form_gives_a_new_session_key():
    user = make_user("fixed@example.com")
    make_account(user)
    client = Client()
    # A session the visitor had before signing in (or one an attacker planted on them).
    planted = client.session
    planted["seen"] = True
    planted.save()
    before = _session_key(client)

    response = _sign_in(client, user.email)

    assert response.status_code == 302
    after = _session_key(client)
    assert after != before
    assert not SessionStore().exists(before)  # the old key is worth nothing now
    assert client.get(reverse("overview")).status_code == 200
    # The planted key, presented again, is a signed-out visitor.
    attacker = Client()
    attacker.cookies[settings.SESSION_COOKIE_NAME] = before
    assert attacker.get(reverse("overview"))["Location"].startswith(reverse("login"))


def test_signing_out_flushes_the_session():
    user = make_user("out@example.com")
    make_account(user)
    client = Client()
    _sign_in(client, user.email)
    signed_in = _session_key(client)

    response = client.post(reverse("logout"))

    assert response.status_code == 302
    assert not SessionStore().exists(signed_in)
    assert _session_key(client) != signed_in
    assert client.get(reverse("overview"))["Location"].startswith(reverse("login"))
    replay = Client()
    replay.cookies[settings.SESSION_COOKIE_NAME] = signed_in
    assert replay.get(reverse("overview"))["Location"].startswith(reverse("login"))


def test_changing_the_password_keeps_this_session_and_ends_the_others():
    user = make_user("change@example.com")
    make_account(user)
    here, elsewhere = Client(), Client()
    _sign_in(here, user.email)
    _sign_in(elsewhere, user.email)
    assert elsewhere.get(reverse("overview")).status_code == 200

    new_password = "another-horse-battery-staple-43"
    response = here.post(
        reverse("password_change"),
        {"old_password": PASSWORD, "new_password1": new_password, "new_password2": new_password},
    )

    assert response.status_code == 302
    done = here.get(response["Location"])
    assert "Other browsers signed in as you were signed out" in done.content.decode()
    assert here.get(reverse("overview")).status_code == 200
    assert elsewhere.get(reverse("overview"))["Location"].startswith(reverse("login"))
    # And the new password is the one that works.
    assert _sign_in(Client(), user.email, new_password).status_code == 302
