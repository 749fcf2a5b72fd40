"""The usage page and its CSV export: roll-ups by day or month, grouped by model, project or
key, with plotly charts. Malformed filters fall back to defaults with a message."""

import csv

from django.http import HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from console.tenancy import account_view
from keys.models import ApiKey
from projects.models import Project
from usage.charts import usage_figures
from usage.selectors import usage_csv_rows, usage_query_parse, usage_report


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
    }
    template = "usage/usage.html#report" if request.htmx else "usage/usage.html"
    return render(request, template, context)


@account_view("usage.view")
@require_GET
def usage_csv(request):
    account = request.account
    query, _notes = usage_query_parse(request.GET, account=account, now=timezone.now())
    report = usage_report(account=account, query=query)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="usage-{query.start:%Y%m%d}-{query.end:%Y%m%d}.csv"'
    )
    writer = csv.writer(response)
    writer.writerows(usage_csv_rows(report))
    return response
