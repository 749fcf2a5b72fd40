import json

from django.contrib import messages
from django.http import FileResponse, Http404, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from console.http import client_ip
from console.tenancy import account_object_or_404, account_view
from history import selectors, services
from history.forms import HistoryFilterForm
from history.models import HistoryExport, PromptLog


def _cursor(text: str):
    at_text, _sep, pk_text = (text or "").rpartition("_")
    at = parse_datetime(at_text) if at_text else None
    if at is None or not pk_text.isdigit() or len(pk_text) > 18:
        return None
    return at, int(pk_text)


@account_view("history.view")
@require_GET
def history_search(request):
    form = HistoryFilterForm(request.GET or None, account=request.account)
    valid = not form.is_bound or form.is_valid()
    filters = form.filters()
    before = _cursor(form.cleaned_data.get("before", "")) if form.is_bound and valid else None
    rows, cursor, count = selectors.history_search(
        account=request.account, filters=filters, before=before
    )
    next_query = None
    if cursor:
        query = request.GET.copy()
        query["before"] = f"{cursor[0].isoformat()}_{cursor[1]}"
        next_query = query.urlencode()
    context = {
        "form": form,
        "rows": rows,
        "count": count,
        "count_capped": count > selectors.COUNT_CAP,
        "next_query": next_query,
        "retention_days": request.account.tier.retention_days,
    }
    template = "history/search.html#results" if request.htmx else "history/search.html"
    return render(request, template, context, status=200 if valid else 422)


@account_view("history.view")
@require_GET
def history_detail(request, log_id: int):
    log = account_object_or_404(
        PromptLog.objects.select_related("api_key", "project"), request.account, pk=log_id
    )
    mask = log.api_key.mask if log.api_key else "…"
    curl_body = json.dumps(
        {"model": log.model, "messages": log.messages, **(log.parameters or {})},
        ensure_ascii=False,
    )
    curl = (
        f"curl {request.scheme}://{request.get_host()}/api/paas/v4/chat/completions \\\n"
        f'  -H "Authorization: Bearer <your key {mask}>" \\\n'
        f"  -H 'Content-Type: application/json' \\\n"
        f"  -d '{curl_body.replace(chr(39), chr(39) + chr(92) + chr(39) + chr(39))}'"
    )
    return render(
        request,
        "history/detail.html",
        {
            "log": log,
            "curl": curl,
            "raw": json.dumps(
                {
                    "messages": log.messages,
                    "parameters": log.parameters,
                    "response": log.response_text,
                },
                ensure_ascii=False,
                indent=2,
            ),
        },
    )


EXPORT_LIMIT = 100_000


@account_view("history.view")
@require_GET
def history_export(request):

    form = HistoryFilterForm(request.GET or None, account=request.account)
    fmt = request.GET.get("format", "csv")
    if (form.is_bound and not form.is_valid()) or fmt not in ("csv", "jsonl"):
        return render(
            request,
            "history/export_refused.html",
            {"message": _("Fix the filters first.")},
            status=422,
        )
    filters = form.filters()
    total = selectors.history_queryset(account=request.account, filters=filters)[
        : EXPORT_LIMIT + 1
    ].count()
    if total > EXPORT_LIMIT:
        # Too many to stream while the person waits: offer a background export.
        return render(
            request,
            "history/export_large.html",
            {"total": total, "query": request.GET.urlencode(), "format": fmt},
        )
    response = StreamingHttpResponse(
        services.export_rows(account=request.account, filters=filters, fmt=fmt),
        content_type="text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson",
    )
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="prompt-history-{stamp}.{fmt}"'
    return response


@account_view("history.delete")
@require_http_methods(["GET", "POST"])
def history_delete(request):

    data = request.POST if request.method == "POST" else request.GET
    form = HistoryFilterForm(data or None, account=request.account)
    if form.is_bound and not form.is_valid():
        return render(
            request,
            "history/export_refused.html",
            {"message": _("Fix the filters first.")},
            status=422,
        )
    filters = form.filters()
    if request.method == "POST":
        deleted = services.history_delete(
            account=request.account, filters=filters, actor=request.user, ip=client_ip(request)
        )
        messages.success(
            request, _("%(count)s requests deleted from the history.") % {"count": deleted}
        )
        return redirect("history:search")
    count = selectors.history_queryset(account=request.account, filters=filters).count()
    return render(
        request,
        "history/delete.html",
        {"form": form, "count": count, "query": request.GET.urlencode()},
    )


@account_view("history.view")
@require_POST
def history_export_start(request):

    form = HistoryFilterForm(request.POST, account=request.account)
    fmt = request.POST.get("format", "csv")
    if not form.is_valid() or fmt not in ("csv", "jsonl"):
        return render(
            request,
            "history/export_refused.html",
            {"message": _("Fix the filters first.")},
            status=422,
        )
    query = {k: v for k, v in request.POST.items() if k in form.fields and k != "before"}
    export = services.history_export_start(
        account=request.account, user=request.user, query=query, fmt=fmt
    )
    return redirect("history:export_status", export.pk)


@account_view("history.view")
@require_GET
def history_export_status(request, export_id: int):
    export = account_object_or_404(HistoryExport, request.account, pk=export_id)
    template = "history/export_status.html#status" if request.htmx else "history/export_status.html"
    return render(request, template, {"export": export})


@account_view("history.view")
@require_GET
def history_export_download(request, export_id: int):

    export = account_object_or_404(HistoryExport, request.account, pk=export_id)
    if export.status != HistoryExport.Status.DONE or not export.file:
        raise Http404
    return FileResponse(
        export.file.open("rb"),
        as_attachment=True,
        filename=f"prompt-history-{export.pk}.{export.format}",
    )
