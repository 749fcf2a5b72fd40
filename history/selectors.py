"""Reads of the prompt log. Every query is scoped to one account and a date range first."""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q, QuerySet

from console.models import Account
from history.models import PromptLog

PAGE_SIZE = 50
COUNT_CAP = 1_000  # "1,000+" beyond this: an exact count over millions of rows is not worth it


@dataclass(frozen=True)
class Filters:
    since: datetime
    until: datetime
    text: str = ""
    api_key_id: int | None = None
    project_id: int | None = None
    model: str = ""
    status: str = ""  # "", "ok", "error"


def history_queryset(*, account: Account, filters: Filters) -> QuerySet[PromptLog]:
    rows = PromptLog.objects.filter(
        account=account, created_at__gte=filters.since, created_at__lt=filters.until
    )
    if filters.api_key_id:
        rows = rows.filter(api_key_id=filters.api_key_id)
    if filters.project_id:
        rows = rows.filter(project_id=filters.project_id)
    if filters.model:
        rows = rows.filter(model=filters.model)
    if filters.status == "ok":
        rows = rows.filter(status=200)
    elif filters.status == "error":
        rows = rows.exclude(status=200)
    if filters.text:
        # icontains escapes % and _ (matched literally) and compares UPPER(...): the
        # expression the pg_trgm index is built on.
        rows = rows.filter(search_text__icontains=filters.text)
    return rows


def history_search(
    *, account: Account, filters: Filters, before: tuple[datetime, int] | None = None
):
    """A page of results, newest first, keyset on (created_at, id); the next cursor; and an
    approximate count (exact up to COUNT_CAP)."""
    rows = history_queryset(account=account, filters=filters)
    page = rows
    if before:
        at, pk = before
        page = page.filter(Q(created_at__lt=at) | Q(created_at=at, id__lt=pk))
    results = list(
        page.select_related("api_key", "project")
        .defer("messages", "parameters", "response_text", "search_text")
        .order_by("-created_at", "-id")[: PAGE_SIZE + 1]
    )
    cursor = None
    if len(results) > PAGE_SIZE:
        last = results[PAGE_SIZE - 1]
        cursor = (last.created_at, last.pk)
    count = rows.order_by()[: COUNT_CAP + 1].count()
    return results[:PAGE_SIZE], cursor, count
