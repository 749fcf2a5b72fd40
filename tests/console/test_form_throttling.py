"""Sign-up (which says whether an address is registered) and password reset (which sends
email) are limited per IP address and hour; past the limit they answer 429 with a page.

Counts live in the shared state (Redis), which outlives a test and is shared by concurrent
runs: each test posts from an address of its own."""

import secrets

import pytest
from django.test import Client
from django.urls import reverse

from tests.factories import make_account, make_user

pytestmark = pytest.mark.django_db


def fresh_ip() -> str:
    return "10.{}.{}.{}".format(*secrets.token_bytes(3))


@pytest.fixture
def registered():
    user = make_user("taken@example.com")
    make_account(user)
    return user


def test_signups_past_the_hourly_limit_are_refused(settings, registered):
    settings.SIGNUPS_PER_HOUR_PER_IP = 3
    client = Client(REMOTE_ADDR=fresh_ip())
    answers = [
        client.post(reverse("signup"), {"email": email}).status_code
        for email in ["taken@example.com", "a@example.com", "b@example.com"]
    ]
    assert answers == [422, 422, 422]  # incomplete forms, but answered

    refused = client.post(reverse("signup"), {"email": "taken@example.com"})

    assert refused.status_code == 429
    page = refused.content.decode()
    assert "Too many attempts" in page and "already exists" not in page
    assert client.get(reverse("signup")).status_code == 200  # the page itself still shows
    other = Client(REMOTE_ADDR=fresh_ip())
    assert other.post(reverse("signup"), {"email": "taken@example.com"}).status_code == 422


def test_password_resets_past_the_hourly_limit_are_refused(
    settings, registered, mailoutbox, django_capture_on_commit_callbacks
):
    settings.PASSWORD_RESETS_PER_HOUR_PER_IP = 2
    client = Client(REMOTE_ADDR=fresh_ip())
    for _attempt in range(2):
        with django_capture_on_commit_callbacks(execute=True):  # the outbox sends on commit
            response = client.post(reverse("password_reset"), {"email": registered.email})
        assert response.status_code == 302
    assert len(mailoutbox) == 2

    with django_capture_on_commit_callbacks(execute=True):
        refused = client.post(reverse("password_reset"), {"email": registered.email})

    assert refused.status_code == 429
    assert len(mailoutbox) == 2
    other = Client(REMOTE_ADDR=fresh_ip())
    assert other.post(reverse("password_reset"), {"email": registered.email}).status_code == 302


def test_the_limits_default_to_ten_an_hour_and_come_from_the_environment(tmp_path):
    from tests.console.test_settings import _clean_env, _python

    env = _clean_env(
        DJANGO_SETTINGS_MODULE="config.settings",
        CONSOLE_VAR_DIR=str(tmp_path),
        PASSWORD_RESETS_PER_HOUR_PER_IP="4",
    )
    code = "import django; django.setup(); from django.conf import settings; "
    code += "print(settings.SIGNUPS_PER_HOUR_PER_IP, settings.PASSWORD_RESETS_PER_HOUR_PER_IP)"
    assert _python(code, env) == "10 4"
