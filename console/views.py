"""Accounts, members, invitations, the audit log and the language. Views parse input, call a
service, render. (The overview, sign-up and account opening are portal/views.py.)"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.i18n import set_language as django_set_language

from console import selectors, services
from console.forms import InviteForm, LanguageForm, RoleForm, SwitchAccountForm
from console.http import client_ip
from console.models import Invitation, Membership
from console.roles import assignable_roles
from console.tenancy import account_object_or_404, account_view, switch_account


@account_view("audit.view")
@require_GET
def audit_log(request):
    # NUL is no action's, and PostgreSQL refuses it in a query.
    action = request.GET.get("action", "").replace("\x00", "").strip()[:64]
    events = selectors.audit_log(account=request.account, action_prefix=action)
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    return render(request, "console/audit_log.html", {"page": page, "action": action})


@login_required
@require_POST
def verify_email_resend(request):
    if request.user.email_verified:
        messages.info(request, _("Your email address is already verified."))
    else:
        services.email_verification_send(user=request.user)
        messages.success(request, _("We sent a new verification link."))
    return redirect("overview")


@login_required
@require_POST
def account_switch(request):
    form = SwitchAccountForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choose an account."))
        return redirect("overview")
    membership = switch_account(request, form.cleaned_data["account"])
    messages.info(request, _("Now working in %(name)s.") % {"name": membership.account.name})
    return redirect("overview")


# --- Members --------------------------------------------------------------------------------


def _members_page(request, *, invite_form=None, status=200):
    membership = request.membership
    context = {
        "members": selectors.member_list(account=request.account),
        "invitations": selectors.open_invitations(account=request.account),
        "invite_form": invite_form or InviteForm(roles=assignable_roles(membership.role)),
        "assignable_roles": assignable_roles(membership.role),
    }
    template = "console/members.html#members" if request.htmx else "console/members.html"
    return render(request, template, context, status=status)


@account_view("members.view")
@require_GET
def members(request):
    return _members_page(request)


@account_view("members.manage")
@require_POST
def member_invite(request):
    form = InviteForm(request.POST, roles=assignable_roles(request.membership.role))
    if not request.user.email_verified:
        form.add_error(None, _("Verify your own email address before inviting others."))
    if form.is_valid():
        try:
            invitation = services.invitation_create(
                account=request.account,
                inviter=request.membership,
                ip=client_ip(request),
                **form.cleaned_data,
            )
        except services.ServiceError as error:
            form.add_error("email", str(error))
        else:
            messages.success(
                request, _("Invitation sent to %(email)s.") % {"email": invitation.email}
            )
            if request.htmx:
                return _members_page(request)
            return redirect("members")
    return _members_page(request, invite_form=form, status=422)


@account_view("members.manage")
@require_POST
def member_role(request, membership_id: int):
    target = account_object_or_404(Membership, request.account, pk=membership_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choose a valid role."))
    else:
        try:
            services.membership_change_role(
                membership=target,
                role=form.cleaned_data["role"],
                actor=request.membership,
                ip=client_ip(request),
            )
        except services.ServiceError as error:
            messages.error(request, str(error))
        else:
            messages.success(request, _("Role of %(user)s changed.") % {"user": target.user})
    if request.htmx:
        return _members_page(request)
    return redirect("members")


@account_view("members.view")
@require_http_methods(["GET", "POST"])
def member_remove(request, membership_id: int):
    """GET asks for confirmation; POST removes. Anyone may leave; managers remove others."""
    target = account_object_or_404(
        Membership.objects.select_related("user"), request.account, pk=membership_id
    )
    leaving = target.user_id == request.user.pk
    if not leaving and not selectors.membership_can(request.membership, "members.manage"):
        return render(request, "403.html", status=403)
    if request.method == "POST":
        try:
            services.membership_remove(
                membership=target, actor=request.membership, ip=client_ip(request)
            )
        except services.ServiceError as error:
            messages.error(request, str(error))
            return redirect("members")
        if leaving:
            messages.success(request, _("You left %(name)s.") % {"name": request.account.name})
            return redirect("overview")
        messages.success(request, _("%(user)s was removed.") % {"user": target.user})
        return redirect("members")
    return render(request, "console/member_remove.html", {"target": target, "leaving": leaving})


@account_view("members.manage")
@require_POST
def invitation_revoke(request, invitation_id: int):
    invitation = account_object_or_404(Invitation, request.account, pk=invitation_id)
    services.invitation_revoke(
        invitation=invitation, actor=request.membership, ip=client_ip(request)
    )
    messages.success(request, _("Invitation to %(email)s revoked.") % {"email": invitation.email})
    if request.htmx:
        return _members_page(request)
    return redirect("members")


@require_http_methods(["GET", "POST"])
def invitation_accept(request, token: str):
    invitation = services.invitation_for_token(token)
    if invitation is None:
        return render(
            request,
            "console/invitation.html",
            {"error": _("This invitation link is not valid.")},
            status=404,
        )
    if not request.user.is_authenticated:
        return render(request, "console/invitation.html", {"invitation": invitation})
    if request.method == "POST":
        try:
            membership = services.invitation_accept(token=token, user=request.user)
        except services.ServiceError as error:
            return render(
                request,
                "console/invitation.html",
                {"invitation": invitation, "error": str(error)},
                status=400,
            )
        switch_account(request, membership.account_id)
        messages.success(request, _("You joined %(name)s.") % {"name": membership.account.name})
        return redirect("overview")
    return render(request, "console/invitation.html", {"invitation": invitation})


@require_POST
def set_language(request):
    """Django's set_language, plus remembering the choice on the signed-in user."""
    form = LanguageForm(request.POST)
    if form.is_valid() and request.user.is_authenticated:
        services.user_set_language(user=request.user, language=form.cleaned_data["language"])
    if not form.is_valid():
        target = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
            target = reverse("overview")
        return HttpResponseRedirect(target)
    return django_set_language(request)
