"""Two-factor secrets at rest (issue 20, item 9): authenticator seeds encrypted, recovery codes
kept as keyed hashes, and "replace my recovery codes"."""

import base64
import importlib
import io
import time

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from console import two_factor
from console.models import AuditEvent, AuthenticatorApp, RecoveryCode, RecoveryCodeSet
from tests.console.test_two_factor import (
    current_code,
    enable,
    shown_codes,
    sign_in,
    time_passes,
)
from tests.factories import login_verified, make_user

pytestmark = pytest.mark.django_db


def raw_rows(table: str) -> str:
    """Every column of every row of `table`, as the database holds it."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
        return " ".join(str(value) for row in cursor.fetchall() for value in row)


def test_the_database_never_holds_a_seed_or_a_recovery_code_in_plain_text():
    user = make_user()
    device, codes = enable(user)
    seed = device.bin_key

    stored = " ".join(
        raw_rows(table)
        for table in (
            "console_authenticatorapp",
            "console_recoverycodeset",
            "console_recoverycode",
            "otp_totp_totpdevice",
            "otp_static_staticdevice",
            "otp_static_statictoken",
        )
    ).lower()

    assert len(seed) == 20
    for form in (seed.hex(), base64.b32encode(seed).decode(), base64.b64encode(seed).decode()):
        assert form.lower() not in stored
    assert all(code.lower() not in stored for code in codes)
    assert RecoveryCode.objects.filter(device__user=user).count() == 10


def test_signing_in_with_the_app_and_with_a_recovery_code_still_works(client):
    user = make_user()
    device, codes = enable(user)
    sign_in(client, user)
    assert client.post(reverse("login_verify"), {"code": current_code(device)}).status_code == 302
    assert client.get(reverse("overview")).wsgi_request.user.is_verified()
    client.post(reverse("logout"))

    sign_in(client, user)
    assert client.post(reverse("login_verify"), {"code": codes[3]}).status_code == 302
    client.post(reverse("logout"))

    sign_in(client, user)
    time_passes(user)
    assert client.post(reverse("login_verify"), {"code": codes[3]}).status_code == 422  # used
    assert RecoveryCode.objects.filter(device__user=user).count() == 9


def test_replacing_recovery_codes_shows_new_ones_once_and_the_old_ones_stop_working(client):
    user = make_user()
    device, old_codes = enable(user)
    login_verified(client, user)
    url = reverse("two_factor_recovery_codes")
    assert "Replace my recovery codes" in client.get(reverse("two_factor")).content.decode()

    wrong = client.post(url, {"regenerate-code": "000000"})
    assert wrong.status_code == 422
    assert not AuditEvent.objects.filter(action="user.two_factor_recovery_codes_regenerate")

    page = client.post(url, {"regenerate-code": current_code(device)})

    assert page.status_code == 200 and "no-store" in page["Cache-Control"]
    new_codes = shown_codes(page)
    assert len(set(new_codes)) == 10 and not set(new_codes) & set(old_codes)
    assert RecoveryCode.objects.filter(device__user=user).count() == 10
    assert AuditEvent.objects.filter(
        action="user.two_factor_recovery_codes_regenerate", actor=user
    ).exists()
    time_passes(user)
    assert two_factor.two_factor_verify(user=user, code=old_codes[0]) is None
    time_passes(user)
    assert two_factor.two_factor_verify(user=user, code=new_codes[0]) is not None


def test_replacing_recovery_codes_needs_two_factor_on(client):
    user = make_user()
    client.force_login(user)
    response = client.post(reverse("two_factor_recovery_codes"), {"regenerate-code": "123456"})
    assert response["Location"] == reverse("two_factor")
    assert not RecoveryCodeSet.objects.exists()


def test_the_migration_encrypts_existing_seeds_and_hashes_existing_codes(client):
    """What migration 0010 does to the rows django-otp kept in plain text."""
    user = make_user()
    old_app = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    old_codes = StaticDevice.objects.create(user=user, name="backup", confirmed=True)
    StaticToken.objects.create(device=old_codes, token="abcd2345")
    StaticToken.objects.create(device=old_codes, token="efgh6789")
    seed = old_app.key
    migration = importlib.import_module("console.migrations.0011_two_factor_secrets_moved")

    migration.move_secrets(apps, None)

    assert not TOTPDevice.objects.exists() and not StaticDevice.objects.exists()
    assert not StaticToken.objects.exists()
    app = AuthenticatorApp.objects.get(user=user)
    assert app.bin_key.hex() == seed and seed not in app.key_encrypted
    assert app.created_at == old_app.created_at
    assert "abcd2345" not in raw_rows("console_recoverycode")
    totp = TOTP(bytes.fromhex(seed), app.step, app.t0, app.digits, app.drift)
    totp.time = time.time()
    assert two_factor.two_factor_verify(user=user, code=f"{totp.token():06d}") == app
    assert two_factor.two_factor_verify(user=user, code="ABCD-2345") is not None
    time_passes(user)
    assert two_factor.two_factor_verify(user=user, code="abcd2345") is None
    assert two_factor.two_factor_status(user=user).recovery_codes_left == 1


def test_pepper_status_names_the_recovery_codes_an_old_pepper_still_hashes(settings):
    settings.API_KEY_PEPPERS = {1: "the-first-pepper-of-this-test"}
    _device, codes = enable(make_user())
    settings.API_KEY_PEPPERS = {2: "the-second-pepper-of-this-test", **settings.API_KEY_PEPPERS}
    out = io.StringIO()

    call_command("pepper_status", stdout=out)

    lines = out.getvalue().splitlines()
    at = lines.index(
        "pepper 1: 0 usable keys (no usable key needs it: it can leave API_KEY_PEPPERS)"
    )
    assert lines[at + 1].startswith("  and the recovery codes of 1 user (they stop working")
    # Still working under the old version until it leaves.
    assert two_factor.two_factor_verify(user=_device.user, code=codes[0]) is not None


def test_staff_may_delete_a_lost_app_in_the_back_office_but_never_read_or_change_it(client):
    """A lost phone: a superuser deletes its app so its owner can set up a new one. The
    admin shows neither the seed nor its ciphertext, and nobody edits or adds an app there."""
    owner = make_user()
    app = AuthenticatorApp.objects.create(user=owner, name="lost phone", confirmed=True)
    login_verified(client, make_user(is_staff=True, is_superuser=True))
    change = reverse("admin:console_authenticatorapp_change", args=[app.pk])

    page = client.get(change).content.decode()
    assert app.key_encrypted not in page and app.bin_key.hex() not in page
    assert client.post(change, {"name": "renamed"}).status_code == 403
    assert client.get(reverse("admin:console_authenticatorapp_add")).status_code == 403

    client.post(reverse("admin:console_authenticatorapp_delete", args=[app.pk]), {"post": "yes"})
    assert not AuthenticatorApp.objects.filter(pk=app.pk).exists()
