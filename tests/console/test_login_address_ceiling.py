"""Sign-in throttling per address and IP pair, with a ceiling per address that slows.

django-axes locks one address only from one IP address: a guesser cannot keep the owner out
from the guesser's own network. Failed passwords from all IP addresses together have a ceiling
per address: past it, signing in as that address waits for the window to end (429 with the
time left), however hard anyone keeps trying meanwhile: slowed, never locked for good."""

import time

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.test import Client
from django.urls import reverse

from tests.console.test_settings import _clean_env, _python
from tests.factories import PASSWORD, make_account, make_user

pytestmark = pytest.mark.django_db

VICTIM = "victim@example.com"


@pytest.fixture
def victim():
    user = make_user(VICTIM)
    make_account(user, starter_pack=False)
    return user


def sign_in(ip: str, password: str = PASSWORD, email: str = VICTIM):
    client = Client(REMOTE_ADDR=ip)
    response = client.post(reverse("login"), {"username": email, "password": password})
    return response


def fail(ip: str, times: int, email: str = VICTIM) -> list[int]:
    return [sign_in(ip, "wrong-password", email).status_code for _attempt in range(times)]


def test_failures_from_the_attackers_ip_lock_only_that_pair(victim):
    assert fail("198.51.100.1", settings.AXES_FAILURE_LIMIT)[-1] == 429

    assert sign_in("198.51.100.1").status_code == 429  # even the right password, from there
    assert sign_in("203.0.113.7").status_code == 302  # the owner, from their own network


def test_failures_from_many_ips_slow_the_address_and_say_for_how_long(victim):
    assert settings.LOGIN_ADDRESS_FAILURE_CEILING == 20
    assert settings.LOGIN_ADDRESS_WINDOW_SECONDS == 300
    # Four failures from each of five networks: no pair reaches django-axes' limit of five.
    for network in range(5):
        assert fail(f"198.51.100.{network + 1}", 4) == [200] * 4
    attempts = list(AccessAttempt.objects.values_list("ip_address", "failures_since_start"))

    response = sign_in("203.0.113.7")  # the owner, with the right password

    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 300
    page = response.content.decode()
    assert "slowed down after many failed attempts from different networks" in page
    assert "Try again in 5 minutes" in page
    assert 'class="topbar"' in page  # the console's layout
    # Refused without a password check: nothing counted anywhere.
    assert list(AccessAttempt.objects.values_list("ip_address", "failures_since_start")) == (
        attempts
    )
    assert sign_in("198.51.100.99", "another-guess").status_code == 429


def test_the_wait_ends_with_its_window_however_the_guesses_go_on(victim, settings):
    settings.LOGIN_ADDRESS_FAILURE_CEILING = 3
    settings.LOGIN_ADDRESS_WINDOW_SECONDS = 2
    for network in range(3):
        fail(f"198.51.100.{network + 1}", 1)
    slowed_at = time.monotonic()
    assert sign_in("203.0.113.7").status_code == 429

    # A guess from a fresh network every tenth of a second: refused while the wait lasts,
    # and refusals do not stretch it.
    network = 10
    while fail(f"198.51.100.{network}", 1) == [429]:
        assert time.monotonic() - slowed_at < 4, "the wait did not end with its window"
        network += 1
        time.sleep(0.1)

    assert network > 12  # it did wait
    assert sign_in("203.0.113.7").status_code == 302


def test_a_locked_pair_guessing_on_does_not_slow_the_address(victim, settings):
    settings.LOGIN_ADDRESS_FAILURE_CEILING = settings.AXES_FAILURE_LIMIT + 1
    fail("198.51.100.1", settings.AXES_FAILURE_LIMIT)  # the pair is locked out now
    assert fail("198.51.100.1", 10) == [429] * 10  # refused by django-axes, unchecked

    assert sign_in("203.0.113.7").status_code == 302


def test_other_addresses_are_not_slowed(victim, settings):
    settings.LOGIN_ADDRESS_FAILURE_CEILING = 2
    fail("198.51.100.1", 1)
    fail("198.51.100.2", 1)
    assert sign_in("203.0.113.7").status_code == 429
    teammate = make_user("teammate@example.com")
    make_account(teammate, starter_pack=False)

    assert sign_in("198.51.100.1", email=teammate.email).status_code == 302


def test_the_ceiling_and_window_come_from_the_environment(tmp_path):
    env = _clean_env(
        DJANGO_SETTINGS_MODULE="config.settings",
        CONSOLE_VAR_DIR=str(tmp_path),
        LOGIN_ADDRESS_FAILURE_CEILING="50",
        LOGIN_ADDRESS_WINDOW_SECONDS="600",
    )
    code = "import django; django.setup(); from django.conf import settings; "
    code += "print(settings.LOGIN_ADDRESS_FAILURE_CEILING, settings.LOGIN_ADDRESS_WINDOW_SECONDS)"
    assert _python(code, env) == "50 600"
