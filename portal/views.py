"""The overview, sign-up, email verification, opening an account, the account's settings and
the staff job page: the pages whose services or reads span several apps. Views parse input,
call a service or selector, render."""

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from console.forms import AccountCreateForm, AccountSettingsForm, SignupForm
from console.http import client_ip, form_status
from console.selectors import membership_can
from console.services import ServiceError
from console.tenancy import account_view, switch_account
from console.throttling import throttle_posts
from console.two_factor import staff_view
from plans.quota import quota_status
from portal import selectors, services
from portal.jobs import job_statuses


@account_view("overview.view")
def overview(request):
    return render(
        request,
        "console/overview.html",
        {
            "summary": selectors.account_overview(account=request.account),
            "dashboard": selectors.overview_dashboard(
                account=request.account,
                with_balance=membership_can(request.membership, "billing.view"),
            ),
            # The coding plan's quota panel (None without a plan).
            "plan": quota_status(request.account),
        },
    )


@require_http_methods(["GET", "POST"])
@throttle_posts("signup", "SIGNUPS_PER_HOUR_PER_IP")
def signup(request):
    if request.user.is_authenticated:
        return redirect("overview")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            user, _account = services.user_signup(
                email=data["email"],
                password=data["password"],
                name=data["name"],
                account_name=data["account_name"],
                currency=data["currency"],
                language=request.LANGUAGE_CODE,
            )
        except ServiceError as error:
            form.add_error("email", str(error))
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(
                request,
                _("Welcome! We sent a verification link to %(email)s.") % {"email": user.email},
            )
            return redirect("overview")
    return render(request, "registration/signup.html", {"form": form}, status=form_status(form))


@require_GET
def verify_email(request, token: str):
    try:
        user = services.email_verify(token=token)
    except ServiceError as error:
        return render(request, "console/verify_failed.html", {"error": str(error)}, status=400)
    messages.success(request, _("Your email address %(email)s is verified.") % {"email": user})
    return redirect("overview" if request.user.is_authenticated else "login")


@login_required
@require_http_methods(["GET", "POST"])
def account_create(request):
    form = AccountCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            account = services.account_create(owner=request.user, **form.cleaned_data)
        except ServiceError as error:
            form.add_error(None, str(error))
        else:
            switch_account(request, account.pk)
            messages.success(request, _("Account %(name)s created.") % {"name": account.name})
            return redirect("overview")
    return render(request, "console/account_create.html", {"form": form}, status=form_status(form))


@account_view("account.manage")
@require_http_methods(["GET", "POST"])
def account_settings(request):
    account = request.account
    form = AccountSettingsForm(
        request.POST or None,
        account=account,
        initial={
            "name": account.name,
            "time_zone": account.time_zone,
            "currency": account.currency,
            "store_prompt_content": account.store_prompt_content,
        },
    )
    if request.method == "POST" and form.is_valid():
        try:
            services.account_update(
                account=account, actor=request.user, ip=client_ip(request), **form.cleaned_data
            )
        except ServiceError as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, _("Account settings saved."))
            return redirect("account_settings")
    return render(
        request, "console/account_settings.html", {"form": form}, status=form_status(form)
    )


@staff_view
@require_GET
def staff_jobs(request):
    """The periodic jobs for staff (with a session verified by two-factor authentication):
    schedule, last run, last failure, next run. Anyone else signed in gets a 404: the page is
    not part of the console they know."""
    return render(request, "console/staff_jobs.html", {"jobs": job_statuses()})
