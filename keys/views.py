"""API key pages. The full key is rendered in exactly one response (create or rotate), marked
no-store, and never put in a message, the session or a redirect."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect, reswap, retarget

from console.http import client_ip, form_status
from console.roles import role_can
from console.services import ServiceError
from console.tenancy import account_object_or_404, account_view
from keys import selectors, services
from keys.forms import ApiKeyCreateForm, ApiKeyEditForm, RotateForm
from keys.models import ApiKey, Scope


def _manageable_key(request, key_id: int, queryset=None) -> ApiKey:
    """A key of this account the member may change: admin-read keys need keys.admin_read
    (otherwise rotating one would hand a developer a fresh admin-read key)."""
    key = account_object_or_404(
        queryset if queryset is not None else ApiKey.objects.select_related("project"),
        request.account,
        pk=key_id,
    )
    if key.scope == Scope.ADMIN_READ and not role_can(request.membership.role, "keys.admin_read"):
        raise PermissionDenied
    return key


def _scopes(request) -> list[str]:
    scopes = [Scope.INFERENCE]
    if role_can(request.membership.role, "keys.admin_read"):
        scopes.append(Scope.ADMIN_READ)
    return scopes


def _create_form(request, data=None):
    return ApiKeyCreateForm(data, account=request.account, scopes=_scopes(request))


def _page(request, *, form=None, status=200):
    context = {
        "keys": selectors.key_list(account=request.account),
        "form": form or _create_form(request),
    }
    return render(request, "keys/list.html", context, status=status)


@sensitive_variables("created")
def _shown_once(request, created, *, rotated_from=None):
    """The one response that carries the full key."""
    template = "keys/created.html#dialog" if request.htmx else "keys/created.html"
    response = render(
        request, template, {"created": created.key, "raw_key": created.raw, "old": rotated_from}
    )
    response["Cache-Control"] = "no-store"
    return response


@account_view("keys.view")
@require_GET
def key_list(request):
    return _page(request)


@account_view("keys.manage")
@require_POST
@never_cache
@sensitive_variables("created")
def key_create(request):
    form = _create_form(request, request.POST)
    if form.is_valid():
        try:
            created = services.api_key_create(
                account=request.account,
                project=form.cleaned_data["project"],
                label=form.cleaned_data["label"],
                scope=form.cleaned_data["scope"],
                environment=form.cleaned_data["environment"],
                expires_at=form.expires_at,
                actor=request.user,
                ip=client_ip(request),
            )
        except ServiceError as error:
            form.add_error(None, str(error))
        else:
            return _shown_once(request, created)
    if request.htmx:
        # The errors belong in the form, not in the dialog slot the success would fill.
        response = render(request, "keys/list.html#create-form", {"form": form}, status=422)
        return reswap(retarget(response, "#create-key"), "outerHTML")
    return _page(request, form=form, status=422)


@account_view("keys.view")
@require_GET
def key_detail(request, key_id: int):
    key = account_object_or_404(
        ApiKey.objects.select_related("project", "created_by", "replaced_by"),
        request.account,
        pk=key_id,
    )
    return _detail(
        request, key, ApiKeyEditForm(initial={"label": key.label, "environment": key.environment})
    )


def _detail(request, key, edit_form, *, status=200):
    context = {
        "key": key,
        "edit_form": edit_form,
        "rotate_form": RotateForm(),
    }
    return render(request, "keys/detail.html", context, status=status)


@account_view("keys.manage")
@require_POST
def key_edit(request, key_id: int):
    key = _manageable_key(request, key_id)
    form = ApiKeyEditForm(request.POST)
    if not form.is_valid():
        return _detail(request, key, form, status=form_status(form))
    services.api_key_update(key=key, actor=request.user, ip=client_ip(request), **form.cleaned_data)
    messages.success(request, _("Key %(mask)s saved.") % {"mask": key.mask})
    return redirect("keys:detail", key.pk)


@account_view("keys.manage")
@require_http_methods(["GET", "POST"])
def key_revoke(request, key_id: int):
    key = _manageable_key(request, key_id)
    if request.method == "POST":
        services.api_key_revoke(key=key, actor=request.user, ip=client_ip(request))
        messages.success(
            request,
            _("Key %(label)s (%(mask)s) revoked: requests with it are refused from now on.")
            % {"label": key.label, "mask": key.mask},
        )
        return redirect("keys:list")
    return render(request, "keys/revoke.html", {"key": key})


@account_view("keys.manage")
@require_POST
@never_cache
@sensitive_variables("created")
def key_rotate(request, key_id: int):
    key = _manageable_key(request, key_id)
    form = RotateForm(request.POST)
    if form.is_valid():
        try:
            created = services.api_key_rotate(
                key=key,
                actor=request.user,
                grace_seconds=form.cleaned_data["grace_seconds"],
                ip=client_ip(request),
            )
        except ServiceError as error:
            messages.error(request, str(error))
        else:
            key.refresh_from_db()
            return _shown_once(request, created, rotated_from=key)
    else:
        messages.error(request, _("Choose what happens to the old key."))
    if request.htmx:
        # Not the dialog slot: the whole detail page, with the error notice.
        return HttpResponseClientRedirect(reverse("keys:detail", args=[key.pk]))
    return redirect("keys:detail", key.pk)
