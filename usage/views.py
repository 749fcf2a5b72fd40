"""The usage page and its CSV export: roll-ups by day or month, grouped by model, project,
key or endpoint, with plotly charts. Malformed filters fall back to defaults with a
message. And the panels of the last 30 days that the project and key pages load from here,
and the cost of one request that its prompt-history page loads (htmx partials: projects,
keys and history sit below usage and cannot import it)."""

import csv

from django.http import HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from console.tenancy import account_object_or_404, account_view
from history.models import PromptLog
from keys.models import ApiKey
from projects.models import Project
from usage.charts import usage_figures, usage_panel
from usage.models import UsageRecord
from usage.selectors import request_usage, usage_csv_rows, usage_query_parse, usage_report


@account_view("usage.view")
@require_GET
def usage_index(request):
    account = request.account
    query, notes = usage_query_parse(request.GET, account=account, now=timezone.now())
    report = usage_report(account=account, query=query)
    context = {
        "report": report,
        "query": query,
        # Shown inside the swapped region, so an htmx filter change shows them too.
        "notes": notes,
        "figures": usage_figures(report, currency=account.currency),
        "projects": Project.objects.filter(account=account).order_by("name"),
        "keys": ApiKey.objects.filter(account=account).order_by("label", "pk"),
        "endpoints": UsageRecord.Endpoint.choices,
    }
    template = "usage/usage.html#report" if request.htmx else "usage/usage.html"
    return render(request, template, context)


@account_view("usage.view")
@require_GET
def usage_csv(request):
    account = request.account
    query, _notes = usage_query_parse(request.GET, account=account, now=timezone.now())
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="usage-{query.start:%Y%m%d}-{query.end:%Y%m%d}.csv"'
    )
    writer = csv.writer(response)
    writer.writerows(usage_csv_rows(account=account, query=query))
    return response


def _panel(request, **usage_filter):
    panel = usage_panel(account=request.account, **usage_filter)
    return render(request, "usage/_usage_panel.html", {"usage_panel": panel})


@account_view("usage.view")
@require_GET
def project_panel(request, project_id: int):
    project = account_object_or_404(Project, request.account, pk=project_id)
    return _panel(request, project_id=project.pk)


@account_view("usage.view")
@require_GET
def key_panel(request, key_id: int):
    key = account_object_or_404(ApiKey, request.account, pk=key_id)
    return _panel(request, api_key_id=key.pk)


@account_view("history.view")
@require_GET
def request_cost(request, log_id: int):
    """What a logged request was charged, for its prompt-history page, which asks for it with
    htmx; without JavaScript its link opens this as a page. The prompt log's permission:
    whoever sees the request sees its cost, as on the page itself."""
    log = account_object_or_404(PromptLog, request.account, pk=log_id)
    context = {
        "log": log,
        "usage": request_usage(account=request.account, request_id=log.request_id),
    }
    template = "usage/request_cost.html#cost" if request.htmx else "usage/request_cost.html"
    return render(request, template, context)
