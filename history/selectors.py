"""Reads of the prompt log. Every query is scoped to one account and a date range first."""

from dataclasses import dataclass, replace
from datetime import datetime

from django.db import connection
from django.db.models import BooleanField, F, Func, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from console.models import Account
from history.models import PromptLog

# Texts this long or longer are narrowed by the search-key index (PostgreSQL only): a
# 1-character query has no character pair, so it walks the account's time index.
SEARCH_KEY_MIN_CHARACTERS = 2
PAGE_SIZE = 50
# Rows of the window read newest first for a page before the key index is asked.
PROBE_ROWS = 1_000
# ... and for a count of COUNT_CAP + 1 matches, once the text has shown itself common.
COUNT_PROBE_ROWS = 4_000
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


class SearchKeysContain(Func):
    """history_search_keys(row's account, row's text) @> history_search_keys(account, query):
    the row has every character pair of the query under its own account (migration 0005).
    Every row containing the query passes, so it only narrows; icontains still decides."""

    output_field = BooleanField()
    arity = 4

    def as_sql(self, compiler, connection, **extra_context):
        parts, params = [], []
        for expression in self.source_expressions:
            sql, expression_params = compiler.compile(expression)
            parts.append(sql)
            params.extend(expression_params)
        sql = "history_search_keys({}, {}) @> history_search_keys({}, {})".format(*parts)
        return sql, params


def _keyed(text: str) -> bool:
    return connection.vendor == "postgresql" and len(text) >= SEARCH_KEY_MIN_CHARACTERS


def history_queryset(
    *, account: Account, filters: Filters, keyed: bool = True
) -> QuerySet[PromptLog]:
    """The account's rows the filters select. `keyed=False` leaves out the search-key
    pre-filter (same rows): for a walk of the time index, where computing every row's keys
    would be waste."""
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
        # icontains escapes % and _ (matched literally) and compares UPPER(...), which
        # history_search_keys also applies: it decides every match.
        rows = rows.filter(search_text__icontains=filters.text)
        if keyed and _keyed(filters.text):
            # The GIN index on the account's character pairs reads only this account's
            # rows with every pair of the text, whatever the table's size. Where the planner
            # filters with it instead, the function's declared cost puts it after icontains,
            # so only matching rows compute their keys.
            rows = rows.filter(
                SearchKeysContain(
                    F("account_id"), F("search_text"), Value(account.pk), Value(filters.text)
                )
            )
    return rows


def _newest_first(rows: QuerySet[PromptLog]) -> list[PromptLog]:
    return list(
        rows.select_related("api_key", "project")
        .defer("messages", "parameters", "response_text", "search_text")
        .order_by("-created_at", "-id")[: PAGE_SIZE + 1]
    )


def _from_newest(rows: QuerySet[PromptLog], window: QuerySet[PromptLog], limit: int, since):
    """`rows` limited to the window's newest `limit` rows: bounded below by the time of the
    limit-th, read from the account's time index alone (a shorter window has no such row
    and is taken whole)."""
    boundary = window.order_by("-created_at", "-id").values("created_at")[limit - 1 : limit]
    return rows.filter(created_at__gte=Coalesce(Subquery(boundary), Value(since)))


def history_search(
    *, account: Account, filters: Filters, before: tuple[datetime, int] | None = None
):
    """A page of results, newest first, keyset on (created_at, id); the next cursor; and an
    approximate count (exact up to COUNT_CAP)."""
    rows = history_queryset(account=account, filters=filters)
    after_cursor = Q()
    if before:
        at, pk = before
        after_cursor = Q(created_at__lt=at) | Q(created_at=at, id__lt=pk)
    page = rows.filter(after_cursor)
    count = None
    if filters.text and _keyed(filters.text):
        # A common text fills a page from the newest rows: the account's time index, read
        # newest first, finds it at once, while the key index would fetch every match of the
        # retention period to sort them. A rare text is the reverse. So: look for a full
        # page among the window's newest PROBE_ROWS rows (a bounded read), and only if it is
        # not there ask the key index. Likewise the capped count of a common text.
        window = history_queryset(account=account, filters=replace(filters, text=""))
        unkeyed = history_queryset(account=account, filters=filters, keyed=False)
        results = _newest_first(
            _from_newest(
                unkeyed.filter(after_cursor),
                window.filter(after_cursor),
                PROBE_ROWS,
                filters.since,
            )
        )
        if len(results) <= PAGE_SIZE:
            results = _newest_first(page)
        else:
            boundary = list(
                window.order_by("-created_at", "-id").values_list("created_at", flat=True)[
                    COUNT_PROBE_ROWS - 1 : COUNT_PROBE_ROWS
                ]
            )
            probed = unkeyed.filter(created_at__gte=boundary[0]) if boundary else unkeyed
            probed_count = probed.order_by()[: COUNT_CAP + 1].count()
            # Without a boundary the probe was the whole window: its count is the count.
            if probed_count > COUNT_CAP or not boundary:
                count = probed_count
    else:
        results = _newest_first(page)
    cursor = None
    if len(results) > PAGE_SIZE:
        last = results[PAGE_SIZE - 1]
        cursor = (last.created_at, last.pk)
    if count is None:
        # Capped, the count stops after COUNT_CAP + 1 matches: through the key index it
        # reads at most about that many rows' pages per match in the window.
        count = rows.order_by()[: COUNT_CAP + 1].count()
    return results[:PAGE_SIZE], cursor, count
