import json

from django.shortcuts import render
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET

from billing.models import UsageRecord
from console.tenancy import account_object_or_404, account_view
from history import selectors
from history.forms import HistoryFilterForm
from history.models import PromptLog


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
    usage = UsageRecord.objects.filter(account=request.account, request_id=log.request_id).first()
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
            "usage": usage,
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
