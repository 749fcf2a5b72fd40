"""Signing in (the password, then the code when two-factor authentication is on) and the
two-factor settings under the user menu. Views parse input, call console/two_factor.py, render.

Wrong codes count as failed sign-ins for django-axes, exactly like wrong passwords: the same
address from the same IP is locked out after the same number of failures, whichever step
failed.
"""

import math
from urllib.parse import urlencode

from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_cool_off
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login as auth_login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.signals import user_login_failed
from django.contrib.auth.views import LoginView, redirect_to_login
from django.core.exceptions import NON_FIELD_ERRORS
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_otp import login as otp_login

from console import staff_two_factor, throttling, two_factor
from console.forms import TwoFactorCodeForm, TwoFactorConfirmForm, TwoFactorDisableForm
from console.http import client_ip, form_status
from console.services import ServiceError


def _safe_next(request, target: str | None, default: str = "overview") -> str:
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse(default)


class SignInView(LoginView):
    """Django's sign-in (django-axes watches its authenticate() call). A user with two-factor
    authentication on is not signed in by the password: the second step is."""

    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        address = two_factor.login_username(request)
        if isinstance(address, str) and address:
            if wait := throttling.signin_address_wait(address):
                return throttling.signin_slowed_response(request, wait)
            # A pair django-axes has locked out is refused without a password check; such
            # refusals must not count against the address, or one IP could keep it slowed.
            request.signin_address = address
            request.signin_password_checked = AxesProxyHandler.is_allowed(
                request, {"username": address}
            )
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        if getattr(self.request, "signin_password_checked", False) and form.has_error(
            NON_FIELD_ERRORS, "invalid_login"
        ):
            throttling.signin_failure_count(self.request.signin_address)
        return super().form_invalid(form)

    def form_valid(self, form):
        user = form.get_user()
        if two_factor.two_factor_enabled(user=user):
            two_factor.pending_login_start(self.request, user=user, next_url=self.get_success_url())
            return redirect("login_verify")
        return super().form_valid(form)


def locked_out(request, original_response=None, credentials=None):
    """django-axes' answer to a locked-out sign-in (AXES_LOCKOUT_CALLABLE): the console's
    page with how long the pause lasts, status 429."""
    cool_off = get_cool_off(request)
    minutes = math.ceil(cool_off.total_seconds() / 60) if cool_off else None
    return render(
        request,
        "registration/locked_out.html",
        {"cooloff_minutes": minutes},
        status=settings.AXES_HTTP_RESPONSE_CODE,
    )


def _verify_code(request, *, user, code: str):
    """The device that accepts `code`, or None. A refused code is a failed sign-in for
    django-axes; when the address is locked out, no code is even tried (the middleware then
    answers with the lockout page)."""
    credentials = {"username": user.get_username()}
    if not AxesProxyHandler.is_allowed(request, credentials):
        request.axes_locked_out = True
        request.axes_credentials = credentials
        return None
    device = two_factor.two_factor_verify(user=user, code=code)
    if device is None:
        user_login_failed.send(sender=__name__, credentials=credentials, request=request)
    return device


def _code_error(*, user, code: str) -> str | None:
    """Why a code cannot be checked right now (django-otp's throttling after wrong codes),
    else None."""
    wait = two_factor.two_factor_wait_seconds(user=user, code=code)
    return two_factor.wait_message(wait) if wait else None


@require_http_methods(["GET", "POST"])
def login_verify(request):
    """The second step of signing in; also asks a signed-in user whose session is not verified
    yet (a staff page sends them here)."""
    pending = two_factor.pending_login(request)
    step_up = pending is None and request.user.is_authenticated
    if pending is not None:
        user, next_url = pending.user, pending.next_url
    elif step_up:
        next_url = _safe_next(request, request.POST.get("next") or request.GET.get("next"))
        if two_factor.session_is_verified(request) or not two_factor.two_factor_enabled(
            user=request.user
        ):
            return HttpResponseRedirect(next_url)
        user = request.user
    else:
        return redirect("login")
    form = TwoFactorCodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        code = form.cleaned_data["code"]
        if error := _code_error(user=user, code=code):
            form.add_error("code", error)
        elif (device := _verify_code(request, user=user, code=code)) is None:
            form.add_error("code", _("That code is not valid. Enter the current one."))
        else:
            if pending is not None:
                # A new session key: the one from before the password is worth nothing now.
                auth_login(request, user, backend=pending.backend)
                two_factor.pending_login_clear(request)
            else:
                request.session.cycle_key()
            otp_login(request, device)
            if two_factor.used_recovery_code(device):
                left = two_factor.two_factor_status(user=user).recovery_codes_left
                messages.warning(
                    request,
                    ngettext(
                        "You used a recovery code: %(count)s is left.",
                        "You used a recovery code: %(count)s are left.",
                        left,
                    )
                    % {"count": left},
                )
            # Not redirect(): a `next` that is not a path would be looked up as a view name.
            return HttpResponseRedirect(next_url)
    context = {"form": form, "next": next_url if step_up else ""}
    return render(request, "registration/login_verify.html", context, status=form_status(form))


def _two_factor_page(request, *, disable_form=None, regenerate_form=None, status=200):
    state = two_factor.two_factor_status(user=request.user)
    if state.enabled:
        disable_form = disable_form or TwoFactorDisableForm(user=request.user)
        regenerate_form = regenerate_form or TwoFactorCodeForm(prefix="regenerate")
    context = {"status": state, "disable_form": disable_form, "regenerate_form": regenerate_form}
    return render(request, "console/two_factor.html", context, status=status)


@login_required
@require_GET
def two_factor_page(request):
    return _two_factor_page(request)


def _recovery_codes_page(request, codes: list[str], next_url: str, *, enabled: bool):
    response = render(
        request,
        "console/two_factor_codes.html",
        {"codes": codes, "next": next_url, "enabled": enabled},
    )
    add_never_cache_headers(response)  # the codes are shown this once
    return response


@login_required
@require_http_methods(["GET", "POST"])
def two_factor_setup(request):
    user = request.user
    if two_factor.two_factor_enabled(user=user):
        messages.info(request, _("Two-factor authentication is already on."))
        return redirect("two_factor")
    use_link = None
    if user.is_staff:
        # Staff need the one-time link this session opened: no QR code, no key without it.
        link = staff_two_factor.staff_link_from_session(request)
        if link is None:
            next_url = request.POST.get("next") or request.GET.get("next") or ""
            query = f"?{urlencode({'next': next_url}, safe='/')}" if next_url else ""
            return redirect(reverse("two_factor_staff_link") + query)

        def use_link():
            return staff_two_factor.staff_link_use(link_id=link.pk, user=user)

    form = TwoFactorConfirmForm(request.POST or None, initial={"next": request.GET.get("next", "")})
    if request.method == "POST" and form.is_valid():
        try:
            enabled = two_factor.two_factor_confirm(
                user=user, code=form.cleaned_data["code"], ip=client_ip(request), use_link=use_link
            )
        except ServiceError as error:
            form.add_error("code", str(error))
        else:
            staff_two_factor.staff_link_forget(request)
            # The session that set the app up counts as verified by it, under a new key.
            request.session.cycle_key()
            otp_login(request, enabled.device)
            next_url = _safe_next(request, form.cleaned_data["next"], "two_factor")
            return _recovery_codes_page(request, enabled.recovery_codes, next_url, enabled=True)
    device = two_factor.two_factor_setup_device(user=user)
    response = render(
        request,
        "console/two_factor_setup.html",
        {
            "form": form,
            "secret": two_factor.totp_secret_text(device),
            "qr_svg": two_factor.totp_qr_svg(device, title=_("QR code for your authenticator app")),
            "staff_required": user.is_staff,
        },
        status=form_status(form),
    )
    add_never_cache_headers(response)
    return response


@login_required
@require_POST
def two_factor_disable(request):
    user = request.user
    if not two_factor.two_factor_enabled(user=user):
        messages.info(request, _("Two-factor authentication is already off."))
        return redirect("two_factor")
    form = TwoFactorDisableForm(request.POST, user=user)
    credentials = {"username": user.get_username()}
    if form.is_valid():
        code = form.cleaned_data["code"]
        if error := _code_error(user=user, code=code):
            form.add_error("code", error)
        elif _verify_code(request, user=user, code=code) is None:
            form.add_error("code", _("That code is not valid. Enter the current one."))
        else:
            two_factor.two_factor_disable(user=user, ip=client_ip(request))
            messages.success(request, _("Two-factor authentication is off."))
            return redirect("two_factor")
    elif "password" in form.errors:
        # A wrong password here is a failed sign-in too: a stolen session cannot guess it.
        user_login_failed.send(sender=__name__, credentials=credentials, request=request)
    return _two_factor_page(request, disable_form=form, status=form_status(form))


@login_required
@require_POST
def two_factor_recovery_codes(request):
    """New recovery codes, confirmed with a code (from the app, or a recovery code): the old
    ones stop working and the new ones are shown once."""
    user = request.user
    if not two_factor.two_factor_enabled(user=user):
        messages.info(request, _("Two-factor authentication is off."))
        return redirect("two_factor")
    form = TwoFactorCodeForm(request.POST, prefix="regenerate")
    if form.is_valid():
        code = form.cleaned_data["code"]
        if error := _code_error(user=user, code=code):
            form.add_error("code", error)
        elif _verify_code(request, user=user, code=code) is None:
            form.add_error("code", _("That code is not valid. Enter the current one."))
        else:
            codes = two_factor.two_factor_recovery_codes_regenerate(
                user=user, ip=client_ip(request)
            )
            return _recovery_codes_page(request, codes, reverse("two_factor"), enabled=False)
    return _two_factor_page(request, regenerate_form=form, status=form_status(form))


# --- Staff: setting two-factor up through a one-time link -------------------------------------


@login_required
@require_GET
def two_factor_staff_link(request):
    """Where a staff member without two-factor lands: a link to set it up was emailed to
    them (once per link's lifetime), or a superuser prints one."""
    user = request.user
    if not user.is_staff:
        raise Http404
    next_url = _safe_next(request, request.GET.get("next"), "two_factor")
    if two_factor.two_factor_enabled(user=user):
        return HttpResponseRedirect(next_url)
    if staff_two_factor.staff_link_from_session(request) is not None:
        return redirect(f"{reverse('two_factor_setup')}?{urlencode({'next': next_url}, safe='/')}")
    link = staff_two_factor.staff_link_live_or_emailed(user=user, ip=client_ip(request))
    return render(request, "console/two_factor_staff_link.html", {"link": link})


@require_GET
def two_factor_staff_link_open(request, token: str):
    """The emailed or printed link: for the staff member it was made for, signed in, it lets
    this session set up an authenticator app."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    user = request.user
    if two_factor.two_factor_enabled(user=user):
        messages.info(request, _("Two-factor authentication is already on."))
        return redirect("two_factor")
    try:
        link = staff_two_factor.staff_link_open(token=token, user=user, ip=client_ip(request))
    except ServiceError as error:
        response = render(
            request,
            "console/two_factor_staff_link_refused.html",
            {"error": str(error), "staff": user.is_staff},
            status=410 if error.gone else 404,
        )
        add_never_cache_headers(response)
        return response
    staff_two_factor.staff_link_remember(request, link)
    query = urlencode({"next": reverse("admin:index")}, safe="/")
    return redirect(f"{reverse('two_factor_setup')}?{query}")
