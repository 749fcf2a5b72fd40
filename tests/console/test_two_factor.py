"""Two-factor authentication (django-otp): optional for users, required for staff.

Set up with a QR code and a code, recovery codes shown once, a second step after the password
(the session is not signed in until it passes), turned off with the password and a code; the
back-office and the staff pages need a verified session."""

import re
import time

import pytest
from django.test import Client
from django.urls import reverse
from django_otp.oath import TOTP

from console import two_factor
from console.models import AuditEvent, AuthenticatorApp, RecoveryCode, RecoveryCodeSet
from tests.console.test_csp import _check as check_csp
from tests.factories import PASSWORD, login_verified, make_account, make_user

pytestmark = pytest.mark.django_db


def time_passes(user):
    """As if half a minute went by: django-otp's throttling after wrong codes (1, 2, 4…
    seconds) is over, and a new code is due (it refuses one at or before the last used)."""
    for model in (AuthenticatorApp, RecoveryCodeSet):
        model.objects.filter(user=user).update(
            throttling_failure_count=0, throttling_failure_timestamp=None
        )
    AuthenticatorApp.objects.filter(user=user).update(last_t=-1)


def current_code(device: AuthenticatorApp) -> str:
    """What the app shows now, once time passed."""
    time_passes(device.user)
    return code_now(device)


def code_now(device: AuthenticatorApp) -> str:
    device.refresh_from_db()
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time()
    return f"{totp.token():0{device.digits}d}"


def enable(user) -> tuple[AuthenticatorApp, list[str]]:
    device = two_factor.two_factor_setup_device(user=user)
    enabled = two_factor.two_factor_confirm(user=user, code=current_code(device))
    return enabled.device, enabled.recovery_codes


@pytest.fixture
def user():
    user = make_user("twofactor@example.com")
    make_account(user)
    return user


def shown_codes(response) -> list[str]:
    """The recovery codes a page shows (in two halves, as people copy them)."""
    return [
        first + second
        for first, second in re.findall(r"<code>(\w{4}) (\w{4})</code>", response.content.decode())
    ]


def sign_in(client, user, password=PASSWORD):
    return client.post(reverse("login"), {"username": user.email, "password": password})


# --- Setting it up ----------------------------------------------------------------------------


def test_setting_up_shows_a_qr_code_and_turns_on_with_a_code(client, user):
    client.force_login(user)
    page = client.get(reverse("two_factor_setup"))
    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"]
    html = page.content.decode()
    assert '<svg width="' in html and 'class="qr-code"' in html
    check_csp(page)  # the inline <svg> needs no inline style or script
    device = AuthenticatorApp.objects.get(user=user)
    assert not device.confirmed
    assert two_factor.totp_secret_text(device) in html
    # Reloading shows the same key: the app already scanned keeps working.
    client.get(reverse("two_factor_setup"))
    assert AuthenticatorApp.objects.filter(user=user).count() == 1

    wrong = client.post(reverse("two_factor_setup"), {"code": "000000"})
    assert wrong.status_code == 422
    too_soon = client.post(reverse("two_factor_setup"), {"code": code_now(device)})
    assert "Too many wrong codes" in too_soon.content.decode()
    assert not two_factor.two_factor_enabled(user=user)

    done = client.post(reverse("two_factor_setup"), {"code": current_code(device)})

    assert done.status_code == 200
    assert "no-store" in done["Cache-Control"]
    shown = shown_codes(done)  # shown this once
    assert len(set(shown)) == 10
    assert RecoveryCode.objects.filter(device__user=user).count() == 10
    assert two_factor.two_factor_enabled(user=user)
    assert AuditEvent.objects.filter(action="user.two_factor_enable", actor=user).exists()
    overview = client.get(reverse("two_factor"))
    assert overview.wsgi_request.user.is_verified()  # the session that set it up
    assert "10 recovery codes left" in overview.content.decode()
    assert client.get(reverse("two_factor_setup"))["Location"] == reverse("two_factor")


def test_the_user_menu_links_the_page(client, user):
    client.force_login(user)
    assert f'href="{reverse("two_factor")}"' in client.get(reverse("overview")).content.decode()


# --- Signing in -------------------------------------------------------------------------------


def test_without_two_factor_the_password_signs_in(client, user):
    response = sign_in(client, user)
    assert response["Location"] == reverse("overview")
    assert client.get(reverse("overview")).status_code == 200


def test_with_two_factor_the_password_alone_does_not_sign_in(client, user):
    device, _codes = enable(user)
    client.get(reverse("login"))
    response = sign_in(client, user)
    assert response["Location"] == reverse("login_verify")
    key_between_steps = client.cookies["sessionid"].value
    assert client.get(reverse("overview"))["Location"].startswith(reverse("login"))

    page = client.get(reverse("login_verify"))
    assert page.status_code == 200 and "Enter your code" in page.content.decode()
    assert client.post(reverse("login_verify"), {"code": "123456"}).status_code == 422
    assert client.get(reverse("overview"))["Location"].startswith(reverse("login"))

    response = client.post(reverse("login_verify"), {"code": current_code(device)})

    assert response["Location"] == reverse("overview")
    assert client.cookies["sessionid"].value != key_between_steps
    overview = client.get(reverse("overview"))
    assert overview.status_code == 200
    assert overview.wsgi_request.user.is_verified()


def test_the_second_step_returns_to_the_page_asked_for(client, user):
    device, _codes = enable(user)
    client.post(
        reverse("login") + "?next=/usage/",
        {"username": user.email, "password": PASSWORD, "next": "/usage/"},
    )
    response = client.post(reverse("login_verify"), {"code": current_code(device)})
    assert response["Location"] == "/usage/"


def test_a_recovery_code_signs_in_once(client, user):
    _device, codes = enable(user)
    sign_in(client, user)
    response = client.post(reverse("login_verify"), {"code": codes[0].upper()}, follow=True)
    assert response.status_code == 200
    assert "You used a recovery code: 9 are left." in response.content.decode()
    client.post(reverse("logout"))

    sign_in(client, user)
    assert client.post(reverse("login_verify"), {"code": codes[0]}).status_code == 422
    time_passes(user)
    assert client.post(reverse("login_verify"), {"code": codes[1]}).status_code == 302


def test_after_a_wrong_code_the_next_one_waits_a_moment(client, user):
    device, _codes = enable(user)
    sign_in(client, user)
    time_passes(user)
    assert client.post(reverse("login_verify"), {"code": "000000"}).status_code == 422

    too_soon = client.post(reverse("login_verify"), {"code": code_now(device)})

    assert too_soon.status_code == 422
    assert "Too many wrong codes: wait 1 second, then try again." in too_soon.content.decode()
    time_passes(user)
    assert client.post(reverse("login_verify"), {"code": code_now(device)}).status_code == 302


def test_the_second_step_expires(client, user):
    device, _codes = enable(user)
    sign_in(client, user)
    session = client.session
    pending = session[two_factor.PENDING_SESSION_KEY]
    pending["at"] -= two_factor.PENDING_MAX_AGE_SECONDS + 1
    session[two_factor.PENDING_SESSION_KEY] = pending
    session.save()

    response = client.post(reverse("login_verify"), {"code": current_code(device)})

    assert response["Location"] == reverse("login")
    assert client.get(reverse("overview"))["Location"].startswith(reverse("login"))


def test_a_password_change_between_the_steps_ends_the_second_step(client, user):
    device, _codes = enable(user)
    sign_in(client, user)
    user.set_password("a-brand-new-password-44")
    user.save()
    response = client.post(reverse("login_verify"), {"code": current_code(device)})
    assert response["Location"] == reverse("login")


def test_wrong_codes_count_as_failed_sign_ins(client, user):
    device, _codes = enable(user)
    sign_in(client, user)
    statuses = []
    for digit in range(5):
        time_passes(user)  # each wrong code is checked (not just throttled) and counted
        statuses.append(client.post(reverse("login_verify"), {"code": f"00000{digit}"}).status_code)
    assert statuses == [422, 422, 422, 422, 429]
    assert client.post(reverse("login_verify"), {"code": current_code(device)}).status_code == 429
    # The password step is locked out too.
    assert sign_in(Client(), user).status_code == 429


# --- Turning it off ---------------------------------------------------------------------------


def test_turning_off_needs_the_password_and_a_code(client, user):
    device, _codes = enable(user)
    login_verified(client, user)
    url = reverse("two_factor_disable")

    wrong_password = client.post(url, {"password": "nope", "code": current_code(device)})
    assert wrong_password.status_code == 422
    time_passes(user)
    wrong_code = client.post(url, {"password": PASSWORD, "code": "999999"})
    assert wrong_code.status_code == 422
    assert two_factor.two_factor_enabled(user=user)

    response = client.post(url, {"password": PASSWORD, "code": current_code(device)})

    assert response["Location"] == reverse("two_factor")
    assert not two_factor.two_factor_enabled(user=user)
    assert not RecoveryCode.objects.filter(device__user=user).exists()
    assert AuditEvent.objects.filter(action="user.two_factor_disable", actor=user).exists()
    client.post(reverse("logout"))
    assert sign_in(client, user)["Location"] == reverse("overview")


# --- Staff ------------------------------------------------------------------------------------


@pytest.fixture
def staff():
    return make_user("staff@example.com", is_staff=True, is_superuser=True)


@pytest.mark.parametrize("url_name", ["admin:index", "staff_jobs"])
def test_staff_without_two_factor_are_told_how_to_get_a_setup_link(client, staff, url_name):
    """The password alone does not enrol an app on a staff user: no QR code, no key, only
    how to get the one-time link (console/test_staff_two_factor_link.py walks through it)."""
    sign_in(client, staff)
    url = reverse(url_name)
    response = client.get(url, follow=True)
    assert response.redirect_chain[-1][0] == f"{reverse('two_factor_staff_link')}?next={url}"
    html = response.content.decode()
    assert "A link was sent to staff@example.com" in html
    assert "manage.py staff_two_factor_link staff@example.com" in html
    assert client.get(url).status_code == 302  # still no way in


@pytest.mark.parametrize("url_name", ["admin:index", "staff_jobs"])
def test_staff_with_two_factor_enter_a_code_first(client, staff, url_name):
    device, _codes = enable(staff)
    client.force_login(staff)  # a session from before the app was set up
    url = reverse(url_name)
    response = client.get(url, follow=True)
    assert response.redirect_chain[-1][0] == f"{reverse('login_verify')}?next={url}"
    before = client.cookies["sessionid"].value

    answer = client.post(reverse("login_verify"), {"code": current_code(device), "next": url})

    assert answer["Location"] == url
    assert client.cookies["sessionid"].value != before
    assert client.get(url).status_code == 200


def test_staff_sign_in_with_both_steps_reaches_the_back_office(client, staff):
    device, _codes = enable(staff)
    client.get(reverse("admin:index"), follow=True)
    response = client.post(
        reverse("login") + "?next=/admin/",
        {"username": staff.email, "password": PASSWORD, "next": "/admin/"},
    )
    assert response["Location"] == reverse("login_verify")
    response = client.post(reverse("login_verify"), {"code": current_code(device)})
    assert response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_signed_in_people_who_are_not_staff_get_a_404_from_the_back_office(client, user):
    client.force_login(user)
    assert client.get(reverse("admin:index"), follow=True).status_code == 404
