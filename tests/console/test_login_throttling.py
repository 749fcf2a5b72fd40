"""Sign-in throttling (django-axes): failures are counted per email address and IP address;
at the limit that pair is locked out for the cool-off, even with the right password, and
shown the console's lockout page (429). Other addresses and other IPs sign in as usual."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.test import Client
from django.urls import reverse

from tests.console.test_settings import _clean_env, _python
from tests.factories import PASSWORD, make_account, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner():
    user = make_user("locked@example.com")
    make_account(user)
    return user


def sign_in(client, email, password=PASSWORD, **extra):
    return client.post(reverse("login"), {"username": email, "password": password}, **extra)


def fail_to_the_limit(client, email, **extra):
    """The limit's worth of wrong passwords; the last one locks the pair out."""
    statuses = [
        sign_in(client, email, "wrong-password", **extra).status_code
        for _attempt in range(settings.AXES_FAILURE_LIMIT)
    ]
    assert statuses == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]


def test_the_limit_and_cool_off_are_five_failures_and_fifteen_minutes():
    assert settings.AXES_FAILURE_LIMIT == 5
    assert settings.AXES_COOLOFF_TIME.total_seconds() == 15 * 60
    assert settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]
    assert settings.AUTHENTICATION_BACKENDS[0] == "axes.backends.AxesStandaloneBackend"


def test_after_five_failures_even_the_right_password_is_refused(client, owner):
    fail_to_the_limit(client, owner.email)

    response = sign_in(client, owner.email)

    assert response.status_code == 429
    page = response.content.decode()
    assert "Too many attempts" in page
    assert "Try again in 15 minutes" in page
    assert 'class="topbar"' in page  # the console's layout, not a bare message
    assert client.get(reverse("overview"))["Location"].startswith(reverse("login"))


def test_the_address_is_counted_whatever_its_case(client, owner):
    fail_to_the_limit(client, "Locked@Example.COM")
    assert sign_in(client, " locked@example.com").status_code == 429


def test_another_ip_address_and_another_user_are_not_locked_out(client, owner):
    fail_to_the_limit(client, owner.email)
    teammate = make_user("teammate@example.com")
    make_account(teammate)

    assert sign_in(Client(), owner.email, REMOTE_ADDR="203.0.113.9").status_code == 302
    assert sign_in(Client(), teammate.email).status_code == 302


def test_after_the_cool_off_the_right_password_works_again(client, owner):
    fail_to_the_limit(client, owner.email)
    # Time travel: the failures happened just over fifteen minutes ago.
    AccessAttempt.objects.update(
        attempt_time=AccessAttempt.objects.get().attempt_time - timedelta(minutes=15, seconds=1)
    )

    response = sign_in(client, owner.email)

    assert response.status_code == 302
    assert client.get(reverse("overview")).status_code == 200
    # A success clears the count: one more failure does not lock the pair out again.
    client.post(reverse("logout"))
    assert sign_in(client, owner.email, "wrong-password").status_code == 200
    assert sign_in(client, owner.email).status_code == 302


def test_a_failure_during_the_lockout_starts_the_cool_off_again(client, owner):
    fail_to_the_limit(client, owner.email)
    first = AccessAttempt.objects.get()
    AccessAttempt.objects.update(attempt_time=first.attempt_time - timedelta(minutes=14))

    assert sign_in(client, owner.email, "still-guessing").status_code == 429
    AccessAttempt.objects.update(
        attempt_time=AccessAttempt.objects.get().attempt_time - timedelta(minutes=14)
    )

    assert sign_in(client, owner.email).status_code == 429


def test_the_back_office_signs_in_through_the_throttled_console_form(client):
    response = client.get(reverse("admin:index"), follow=True)
    first_hop, second_hop = (url for url, _status in response.redirect_chain)
    assert first_hop.startswith(reverse("admin:login"))
    assert second_hop.startswith(reverse("login") + "?next=/admin/")
    assert response.status_code == 200
    # Django's own admin login form (which would skip the second factor) is never served.
    assert (
        client.post(reverse("admin:login"), {"username": "x", "password": "y"}).status_code == 302
    )


def test_limits_come_from_the_environment(tmp_path):
    env = _clean_env(
        DJANGO_SETTINGS_MODULE="config.settings",
        CONSOLE_VAR_DIR=str(tmp_path),
        LOGIN_FAILURE_LIMIT="3",
        LOGIN_LOCKOUT_MINUTES="30",
    )
    code = "import django; django.setup(); from django.conf import settings; "
    code += "print(settings.AXES_FAILURE_LIMIT, int(settings.AXES_COOLOFF_TIME.total_seconds()))"
    assert _python(code, env) == "3 1800"


def test_an_address_longer_than_any_email_is_still_counted(client):
    """The sign-in form does not bound the address; django-axes' column does (255)."""
    long_address = "x" * 300 + "@example.com"
    fail_to_the_limit(client, long_address)
    assert AccessAttempt.objects.get().username == long_address[:255]
