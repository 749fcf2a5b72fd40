"""The project pages: projects with their keys and their month-to-date spend against caps and
the account's budget. They are assembled here, the lowest layer that sees projects, keys and
the spend counters (docs/decisions.md, "Issue 21: the pages that cross layers"); the usage
panel comes from the usage app as an htmx partial."""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing import selectors
from console.http import client_ip, form_status
from console.roles import role_can
from console.services import ServiceError
from console.tenancy import account_object_or_404, account_view
from keys.selectors import key_list
from projects import services
from projects.forms import CapForm, ProjectForm
from projects.models import Project


def _list_page(request, *, form=None, budget_form=None, status=200):
    account = request.account
    context = {
        "rows": selectors.project_rows(
            account=account, include_archived=request.GET.get("archived") == "1"
        ),
        "show_archived": request.GET.get("archived") == "1",
        "form": form or ProjectForm(),
        "budget": selectors.account_budget_usage(account=account),
        "budget_form": budget_form
        or CapForm(
            initial={"amount": account.monthly_budget_nano, "mode": account.budget_mode},
            amount_label=_("Monthly budget"),
        ),
    }
    return render(request, "projects/list.html", context, status=status)


@account_view("projects.view")
@require_GET
def project_list(request):
    return _list_page(request)


@account_view("projects.manage")
@require_POST
def project_create(request):
    form = ProjectForm(request.POST)
    if not form.is_valid():
        return _list_page(request, form=form, status=form_status(form))
    project = services.project_create(
        account=request.account, actor=request.user, ip=client_ip(request), **form.cleaned_data
    )
    messages.success(request, _("Project %(name)s created.") % {"name": project.name})
    return redirect("projects:detail", project.pk)


@account_view("caps.manage")
@require_POST
def account_budget(request):
    form = CapForm(request.POST, amount_label=_("Monthly budget"))
    if not form.is_valid():
        return _list_page(request, budget_form=form, status=form_status(form))
    services.account_set_budget(
        account=request.account,
        budget_nano=form.cleaned_data["amount"],
        mode=form.cleaned_data["mode"],
        actor=request.user,
        ip=client_ip(request),
    )
    messages.success(request, _("Account budget saved."))
    return redirect("projects:list")


def _detail(request, project, *, form=None, cap_form=None, status=200):
    context = {
        "project": project,
        "usage": selectors.project_usage(project=project),
        # Finance sees projects and spend, not keys (the permission map's keys.view).
        "keys": key_list(account=request.account, project=project)
        if role_can(request.membership.role, "keys.view")
        else None,
        "form": form
        or ProjectForm(initial={"name": project.name, "description": project.description}),
        "cap_form": cap_form
        or CapForm(initial={"amount": project.monthly_cap_nano, "mode": project.cap_mode}),
    }
    return render(request, "projects/detail.html", context, status=status)


@account_view("projects.view")
@require_GET
def project_detail(request, project_id: int):
    return _detail(request, account_object_or_404(Project, request.account, pk=project_id))


@account_view("projects.manage")
@require_POST
def project_edit(request, project_id: int):
    project = account_object_or_404(Project, request.account, pk=project_id)
    form = ProjectForm(request.POST)
    if not form.is_valid():
        return _detail(request, project, form=form, status=form_status(form))
    services.project_update(
        project=project, actor=request.user, ip=client_ip(request), **form.cleaned_data
    )
    messages.success(request, _("Project saved."))
    return redirect("projects:detail", project.pk)


@account_view("caps.manage")
@require_POST
def project_cap(request, project_id: int):
    project = account_object_or_404(Project, request.account, pk=project_id)
    form = CapForm(request.POST)
    if not form.is_valid():
        return _detail(request, project, cap_form=form, status=form_status(form))
    services.project_set_cap(
        project=project,
        cap_nano=form.cleaned_data["amount"],
        mode=form.cleaned_data["mode"],
        actor=request.user,
        ip=client_ip(request),
    )
    messages.success(request, _("Monthly cap saved."))
    return redirect("projects:detail", project.pk)


@account_view("caps.manage")
@require_http_methods(["GET", "POST"])
def project_archive(request, project_id: int):
    project = account_object_or_404(Project, request.account, pk=project_id)
    if request.method == "POST":
        try:
            services.project_archive(project=project, actor=request.user, ip=client_ip(request))
        except ServiceError as error:
            messages.error(request, str(error))
            return redirect("projects:detail", project.pk)
        messages.success(
            request,
            _("Project %(name)s archived: its keys stop working now.") % {"name": project.name},
        )
        return redirect("projects:list")
    return render(request, "projects/archive.html", {"project": project})
