"""Two-factor authentication (django-otp): a TOTP authenticator app, plus single-use recovery
codes for the day the phone is lost. The app's seed is encrypted at rest and the recovery codes
are kept as keyed hashes (console.models.AuthenticatorApp, RecoveryCodeSet).

Optional for users; staff need a verified session for the back-office and the staff pages,
and set their app up only through a one-time link (console/staff_two_factor.py).
When a user has a confirmed device, the password alone does not sign in: the session holds a
*pending* sign-in (the user's id, for a few minutes) until a code from the app or a recovery
code is given; only then does `django.contrib.auth.login` run (a new session key) and
`django_otp.login` mark the session verified.
"""

import base64
import functools
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

import segno
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django_otp import user_has_device, verify_token
from django_otp.models import MAX_THROTTLE_DELAY_SECONDS, Device
from django_otp.plugins.otp_static.models import StaticToken

from console.models import (
    RECOVERY_CODE_PURPOSE,
    AuthenticatorApp,
    RecoveryCode,
    RecoveryCodeSet,
)
from console.secrets_at_rest import current_pepper_version, keyed_hash
from console.services import ServiceError, audit_record

RECOVERY_CODE_COUNT = 10
PENDING_SESSION_KEY = "two_factor_pending"
# Between the password and the code: long enough to find the phone, short enough that a
# session left at the second step on a shared computer expires soon.
PENDING_MAX_AGE_SECONDS = 600
_TOTP_CODE = re.compile(r"[0-9]{6}")


# django-axes keeps the address in a 255-character column (an email address has at most 254).
_USERNAME_COLUMN_LENGTH = 255


def login_username(request, credentials: dict | None = None) -> str | None:
    """The address a sign-in attempt is counted against (django-axes' AXES_USERNAME_CALLABLE):
    trimmed and lower-cased as the user manager stores it, so "A@x.com" and "a@x.com" share one
    count of failures. Whatever was typed fits django-axes' column (the sign-in form does not
    enforce a length) and holds no NUL (PostgreSQL text cannot)."""
    if credentials:
        username = credentials.get("username")
    else:
        username = getattr(request, "POST", {}).get("username")
    if not isinstance(username, str):
        return username
    return username.strip().lower().replace("\x00", "\ufffd")[:_USERNAME_COLUMN_LENGTH]


def normalize_code(code: str) -> str:
    """Codes as people type them: with spaces or dashes (recovery codes are shown in two
    halves), in either case."""
    return re.sub(r"[\s-]", "", code or "").lower()


# --- Reads ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TwoFactorStatus:
    enabled: bool
    enabled_at: object = None  # when the app was added (a datetime), if enabled
    recovery_codes_left: int = 0


def two_factor_enabled(*, user) -> bool:
    return user_has_device(user, confirmed=True)


def two_factor_status(*, user) -> TwoFactorStatus:
    if not two_factor_enabled(user=user):
        return TwoFactorStatus(enabled=False)
    app = AuthenticatorApp.objects.filter(user=user, confirmed=True).order_by("pk").first()
    return TwoFactorStatus(
        enabled=True,
        enabled_at=app.created_at if app is not None else None,
        recovery_codes_left=RecoveryCode.objects.filter(
            device__user=user, device__confirmed=True
        ).count(),
    )


def session_is_verified(request) -> bool:
    user = request.user
    return bool(user.is_authenticated and getattr(user, "is_verified", lambda: False)())


# --- Setting up, confirming, turning off ------------------------------------------------------


@dataclass(frozen=True)
class Enabled:
    device: AuthenticatorApp
    # Shown once, on the page that answers the confirmation; the database keeps only hashes.
    recovery_codes: list[str] = field(repr=False)


def two_factor_setup_device(*, user) -> AuthenticatorApp:
    """The unconfirmed app a setup shows: one per user, reused until it is confirmed, so
    reloading the page does not change the QR code already scanned."""
    device = AuthenticatorApp.objects.filter(user=user, confirmed=False).order_by("pk").first()
    if device is None:
        device = AuthenticatorApp.objects.create(
            user=user, name="authenticator app", confirmed=False
        )
    return device


def two_factor_confirm(
    *, user, code: str, ip: str | None = None, use_link: Callable[[], int] | None = None
) -> Enabled:
    """Confirm the app being set up (the one `two_factor_setup_device` shows) with its
    current code; then recovery codes are made, replacing any earlier ones. Raises
    ServiceError when the code does not match. `use_link` (a staff member's setup) uses up
    their one-time link in the same transaction, returning its id, or raises ServiceError."""
    with transaction.atomic():
        device = (
            AuthenticatorApp.objects.select_for_update()
            .filter(user=user, confirmed=False)
            .order_by("pk")
            .first()
        )
        if device is None:
            raise ServiceError(_("This setup expired. Start again."))
        if wait := seconds_to_wait(device):
            raise ServiceError(wait_message(wait))
        # A wrong code is not an exception inside the transaction: django-otp's throttling
        # records the failure, and that record must be committed.
        verified = device.verify_token(normalize_code(code))
        if verified:
            metadata = {"staff_link": use_link()} if use_link is not None else {}
            AuthenticatorApp.objects.filter(pk=device.pk).update(confirmed=True)
            device.confirmed = True
            AuthenticatorApp.objects.filter(user=user).exclude(pk=device.pk).delete()
            codes = _new_recovery_codes(user)
            audit_record(
                action="user.two_factor_enable", actor=user, target=user, ip=ip, metadata=metadata
            )
    if not verified:
        raise ServiceError(_("That code does not match. Enter the current code from the app."))
    return Enabled(device=device, recovery_codes=codes)


def _new_recovery_codes(user) -> list[str]:
    """Ten new codes (django-otp's random 8-character tokens) replacing any earlier ones; only
    their keyed hashes are stored."""
    RecoveryCodeSet.objects.filter(user=user).delete()
    device = RecoveryCodeSet.objects.create(user=user, name="recovery codes", confirmed=True)
    codes = [StaticToken.random_token() for _index in range(RECOVERY_CODE_COUNT)]
    version = current_pepper_version()
    RecoveryCode.objects.bulk_create(
        RecoveryCode(
            device=device,
            code_hash=keyed_hash(code, purpose=RECOVERY_CODE_PURPOSE, pepper_version=version),
            pepper_version=version,
        )
        for code in codes
    )
    return codes


def two_factor_recovery_codes_regenerate(*, user, ip: str | None = None) -> list[str]:
    """New recovery codes after a code from the app or a recovery code confirms it (the
    caller checked that code and counted a failure); every earlier code stops working."""
    with transaction.atomic():
        if not two_factor_enabled(user=user):
            raise ServiceError(_("Two-factor authentication is off."))
        codes = _new_recovery_codes(user)
        audit_record(
            action="user.two_factor_recovery_codes_regenerate", actor=user, target=user, ip=ip
        )
    return codes


def seconds_to_wait(device: Device) -> int:
    """How long django-otp's throttling refuses every code for `device` (1, 2, 4, 8… seconds
    after successive wrong codes); 0 when a code may be tried now."""
    allowed, _reason = device.verify_is_allowed()
    if allowed:
        return 0
    required = min(
        device.get_throttle_factor() * 2 ** (device.throttling_failure_count - 1),
        MAX_THROTTLE_DELAY_SECONDS,
    )
    elapsed = (timezone.now() - device.throttling_failure_timestamp).total_seconds()
    return max(1, math.ceil(required - elapsed))


def wait_message(seconds: int) -> str:
    return ngettext(
        "Too many wrong codes: wait %(seconds)s second, then try again.",
        "Too many wrong codes: wait %(seconds)s seconds, then try again.",
        seconds,
    ) % {"seconds": seconds}


def _devices_for_code(user, code: str):
    model = AuthenticatorApp if _TOTP_CODE.fullmatch(code) else RecoveryCodeSet
    return model.objects.devices_for_user(user, confirmed=True)


def two_factor_wait_seconds(*, user, code: str) -> int:
    """0 when `code` can be checked now, else how long every device it could match refuses
    codes (the sign-in says so instead of calling a right code wrong)."""
    waits = [seconds_to_wait(device) for device in _devices_for_code(user, normalize_code(code))]
    return min(waits, default=0)


def two_factor_verify(*, user, code: str) -> Device | None:
    """The device that accepts `code` (six digits: the app; else a recovery code, used up by
    this), or None. Each device throttles its own failures (django-otp)."""
    code = normalize_code(code)
    for device in _devices_for_code(user, code):
        verified = verify_token(user, device.persistent_id, code)
        if verified is not None:
            return verified
    return None


def two_factor_disable(*, user, ip: str | None = None) -> None:
    """Remove the app and the recovery codes (the view asks for the password and a code)."""
    with transaction.atomic():
        AuthenticatorApp.objects.filter(user=user).delete()
        RecoveryCodeSet.objects.filter(user=user).delete()
        audit_record(action="user.two_factor_disable", actor=user, target=user, ip=ip)


def used_recovery_code(device: Device) -> bool:
    return isinstance(device, RecoveryCodeSet)


# --- What the setup page shows ----------------------------------------------------------------


def totp_secret_text(device: AuthenticatorApp) -> str:
    """The key for typing into an app by hand, base32 in groups of four."""
    secret = base64.b32encode(device.bin_key).decode().rstrip("=")
    return " ".join(secret[index : index + 4] for index in range(0, len(secret), 4))


def totp_qr_svg(device: AuthenticatorApp, *, title: str) -> str:
    """The otpauth:// link as an inline <svg> (no script, no style attribute: the CSP allows
    it as it is)."""
    code = segno.make(device.config_url, error="m")
    return code.svg_inline(
        scale=4, border=2, dark="#111", light="#fff", title=title, svgclass="qr-code"
    )


# --- The sign-in's second step --------------------------------------------------------------


@dataclass(frozen=True)
class PendingLogin:
    user: object
    backend: str
    next_url: str


def pending_login_start(request, *, user, next_url: str) -> None:
    """Remember who gave the right password, without signing them in."""
    request.session[PENDING_SESSION_KEY] = {
        "user": user.pk,
        "backend": user.backend,
        # A password change meanwhile (the owner reacting to a leak) ends the pending sign-in.
        "hash": user.get_session_auth_hash(),
        "next": next_url,
        "at": time.time(),
    }


def pending_login(request) -> PendingLogin | None:
    data = request.session.get(PENDING_SESSION_KEY)
    if not isinstance(data, dict):
        return None
    if time.time() - data.get("at", 0) > PENDING_MAX_AGE_SECONDS:
        pending_login_clear(request)
        return None
    user = get_user_model().objects.filter(pk=data.get("user"), is_active=True).first()
    if user is None or not constant_time_compare(user.get_session_auth_hash(), data.get("hash")):
        pending_login_clear(request)
        return None
    return PendingLogin(user=user, backend=data["backend"], next_url=data["next"])


def pending_login_clear(request) -> None:
    request.session.pop(PENDING_SESSION_KEY, None)


# --- Staff access ---------------------------------------------------------------------------


def staff_two_factor_redirect(request, next_url: str):
    """Where a staff member goes whose session is not verified: the code when they have an
    app, else the page about the one-time link that sets one up (the password alone must not
    enrol an app); either way back to `next_url` afterwards."""
    query = urlencode({"next": next_url}, safe="/")
    if two_factor_enabled(user=request.user):
        messages.info(request, _("Enter a code from your authenticator app to continue."))
        return redirect(f"{reverse('login_verify')}?{query}")
    return redirect(f"{reverse('two_factor_staff_link')}?{query}")


def staff_view(view):
    """Platform staff with a verified session. Anyone else signed in gets a 404 (the page is
    not part of the console they know); the signed-out get the sign-in."""

    @login_required
    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_staff:
            raise Http404
        if not session_is_verified(request):
            return staff_two_factor_redirect(request, request.get_full_path())
        return view(request, *args, **kwargs)

    return wrapped
