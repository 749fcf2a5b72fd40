import csv
import json
import logging
import tempfile
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files import File
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from console.models import Account, Tier
from console.services import audit_record
from console.spreadsheet import csv_cell

# tasks.py imports this module back: both import modules, not names, so either loads first.
from history import tasks
from history.forms import HistoryFilterForm
from history.models import MAX_BODY_CHARACTERS, TRUNCATION_MARKER, HistoryExport, PromptLog
from history.selectors import history_queryset

logger = logging.getLogger(__name__)


def _cut(text: str) -> str:
    if len(text) <= MAX_BODY_CHARACTERS:
        return text
    return text[:MAX_BODY_CHARACTERS] + TRUNCATION_MARKER


def _cut_messages(messages: list) -> list | dict:
    encoded = json.dumps(messages, ensure_ascii=False)
    if len(encoded) <= MAX_BODY_CHARACTERS:
        return messages
    # Too large to keep whole: keep the beginning, marked, as one text.
    return {"truncated": True, "text": encoded[:MAX_BODY_CHARACTERS] + TRUNCATION_MARKER}


def _message_text(message) -> str:
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _search_fields(messages: list, response_text: str) -> tuple[str, str]:
    texts = [_message_text(message) for message in messages if isinstance(message, dict)]
    last_user = next(
        (
            _message_text(message)
            for message in reversed(messages)
            if isinstance(message, dict) and message.get("role") == "user"
        ),
        "",
    )
    return _cut("\n".join([*texts, response_text])), last_user[:200]


def prompt_log_write(
    *,
    account,
    project,
    api_key,
    request_id: str,
    model: str,
    messages: list,
    parameters: dict,
    response_text: str,
    status: int,
    input_tokens: int,
    output_tokens: int,
    latency_ms: int,
    first_token_ms: int | None,
    created_at,
) -> PromptLog:
    """The one way a prompt-log row is written (the gateway's settlement calls it). An
    account that turned content storage off keeps metadata only."""
    if not account.store_prompt_content:
        messages, parameters, response_text = [], {}, ""
    search_text, preview = _search_fields(messages, response_text)
    return PromptLog.objects.create(
        search_text=search_text,
        preview=preview,
        account=account,
        project=project,
        api_key=api_key,
        request_id=request_id,
        model=model,
        messages=_cut_messages(messages),
        parameters=parameters,
        response_text=_cut(response_text),
        status=status,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        latency_ms=latency_ms,
        first_token_ms=first_token_ms,
        created_at=created_at,
    )


def history_purge_expired(*, batch_size: int = 2_000, now=None, pause_ratio: float = 1.0) -> int:
    """Delete each account's prompt-log rows older than its tier's window, in bounded
    batches (short transactions, no long locks); idempotent and resumable: a run that stops
    halfway leaves only older rows for the next run. Returns the rows deleted.

    After each batch it rests `pause_ratio` times as long as the batch took: at full speed
    the purge took the gateway's p99 to 1.5x its idle value on two cores (bench/history.py);
    resting as long as it works keeps the gateway's share and still deletes at several times
    the former rate."""

    now = now or timezone.now()
    deleted = 0
    for tier in Tier.objects.order_by("rank"):
        cutoff = now - timedelta(days=tier.retention_days)
        accounts = Account.objects.filter(tier=tier).order_by("pk").values_list("pk", flat=True)
        for account_id in accounts.iterator():
            count = _purge_account(
                account_id=account_id,
                cutoff=cutoff,
                batch_size=batch_size,
                pause_ratio=pause_ratio,
            )
            if count:
                deleted += count
                logger.info(
                    "history purge: tier %s account %s deleted %s (total %s)",
                    tier.slug,
                    account_id,
                    count,
                    deleted,
                )
    return deleted


def _purge_account(*, account_id: int, cutoff, batch_size: int, pause_ratio: float) -> int:
    """One account's rows before `cutoff`, oldest first, through prompt_account_time_idx.
    Each batch starts after the last one's final (created_at, id): the rows just deleted
    stay in the index until vacuum, and a scan from the oldest would step over all of them
    again each time (the quadratic cost of the former purge, over the whole table's time
    index)."""

    deleted = 0
    after = None
    while True:
        started = time.monotonic()
        rows = PromptLog.objects.filter(account_id=account_id, created_at__lt=cutoff)
        if after:
            at, pk = after
            rows = rows.filter(created_at__gte=at).filter(
                Q(created_at__gt=at) | Q(created_at=at, id__gt=pk)
            )
        batch = list(rows.order_by("created_at", "id").values_list("created_at", "pk")[:batch_size])
        if not batch:
            return deleted
        count, _details = PromptLog.objects.filter(pk__in=[pk for _at, pk in batch]).delete()
        deleted += count
        after = batch[-1]
        time.sleep((time.monotonic() - started) * pause_ratio)


def history_delete(*, account, filters, actor, ip=None, batch_size: int = 5_000) -> int:
    """Delete the account's rows the filters select, in batches, with one audit event."""

    deleted = 0
    while True:
        ids = list(
            history_queryset(account=account, filters=filters).values_list("pk", flat=True)[
                :batch_size
            ]
        )
        if not ids:
            break
        with transaction.atomic():
            count, _details = PromptLog.objects.filter(account=account, pk__in=ids).delete()
        deleted += count
    audit_record(
        action="history.delete",
        account=account,
        actor=actor,
        ip=ip,
        metadata={
            "deleted": deleted,
            "since": filters.since.isoformat(),
            "until": filters.until.isoformat(),
            "text": filters.text,
            "api_key": filters.api_key_id,
            "project": filters.project_id,
            "model": filters.model,
            "status": filters.status,
        },
    )
    return deleted


def export_rows(*, account, filters, fmt: str, progress=None):
    """Every matching row as CSV or JSONL lines, newest first, read in keyset batches (never
    all in memory). `progress(rows)` is called after each batch."""

    class Echo:
        def write(self, value):
            return value

    writer = csv.writer(Echo())
    if fmt == "csv":
        yield writer.writerow(
            [
                "time",
                "request_id",
                "model",
                "status",
                "input_tokens",
                "output_tokens",
                "latency_ms",
                "api_key",
                "project",
                "last_user_message",
                "response",
            ]
        )
    before = None
    while True:
        rows = history_queryset(account=account, filters=filters)
        if before:
            from django.db.models import Q

            rows = rows.filter(
                Q(created_at__lt=before[0]) | Q(created_at=before[0], id__lt=before[1])
            )
        batch = list(rows.select_related("api_key", "project").order_by("-created_at", "-id")[:500])
        for row in batch:
            if fmt == "csv":
                yield writer.writerow(
                    [
                        row.created_at.isoformat(),
                        csv_cell(row.request_id),
                        csv_cell(row.model),
                        row.status,
                        row.input_tokens,
                        row.output_tokens,
                        row.latency_ms,
                        csv_cell(row.api_key.mask if row.api_key else ""),
                        csv_cell(row.project.name if row.project else ""),
                        csv_cell(row.preview),
                        csv_cell(row.response_text),
                    ]
                )
            else:
                yield (
                    json.dumps(
                        {
                            "time": row.created_at.isoformat(),
                            "request_id": row.request_id,
                            "model": row.model,
                            "status": row.status,
                            "messages": row.messages,
                            "parameters": row.parameters,
                            "response": row.response_text,
                            "input_tokens": row.input_tokens,
                            "output_tokens": row.output_tokens,
                            "latency_ms": row.latency_ms,
                            "api_key": row.api_key.mask if row.api_key else None,
                            "project": row.project.name if row.project else None,
                        },
                        ensure_ascii=False,
                    )
                    + "\n"
                )
        if progress is not None:
            progress(len(batch))
        if len(batch) < 500:
            return
        before = (batch[-1].created_at, batch[-1].pk)


def history_export_start(*, account, user, query: dict, fmt: str):
    """Queue a background export of the filter in `query` (the search form's fields)."""

    export = HistoryExport.objects.create(
        account=account, requested_by=user, query=query, format=fmt, created_at=timezone.now()
    )

    # robust: a broker that is down must not turn the recorded request into an error page;
    # the export waits, and the sweep (history_exports_sweep) enqueues it again or fails it.
    transaction.on_commit(lambda: _export_enqueue(export.pk), robust=True)
    return export


def _export_enqueue(export_id: int) -> None:

    # retry=False: with the broker down, fail at once instead of holding the request while
    # kombu retries the publish.
    tasks.build_history_export.apply_async((export_id,), retry=False)


# An export no worker has started after this long is enqueued again by the sweep (its task
# was lost: the broker was down when it was requested, or Redis restarted).
EXPORT_REENQUEUE_AFTER = timedelta(minutes=2)


def history_exports_sweep(*, now: datetime | None = None) -> dict:
    """Exports still waiting for a worker: enqueued again while the broker may come back,
    failed with a message once HISTORY_EXPORT_START_MINUTES have passed (the page says the
    export could not start; the person asks again); and running ones whose task cannot be
    alive any more, failed. Returns what it did."""

    now = now or timezone.now()
    start_by = timedelta(minutes=settings.HISTORY_EXPORT_START_MINUTES)
    waiting = HistoryExport.objects.filter(status=HistoryExport.Status.PENDING)
    failed = waiting.filter(created_at__lte=now - start_by).update(
        status=HistoryExport.Status.FAILED, failure="not_started", finished_at=now
    )
    # Running past the task's hard time limit (after the latest start): its worker and its
    # message are gone (Redis keeps nothing on disk), so it will never finish.
    failed += HistoryExport.objects.filter(
        status=HistoryExport.Status.RUNNING,
        created_at__lte=now
        - start_by
        - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT)
        - EXPORT_REENQUEUE_AFTER,
    ).update(status=HistoryExport.Status.FAILED, failure="interrupted", finished_at=now)
    requeued = 0
    for export_id in waiting.filter(created_at__lte=now - EXPORT_REENQUEUE_AFTER).values_list(
        "pk", flat=True
    )[:500]:
        try:
            _export_enqueue(export_id)
        except Exception as error:  # the broker is still down: the next sweep tries again
            logger.warning("history_exports_sweep enqueue failed: %s", type(error).__name__)
            break
        requeued += 1
    return {"requeued": requeued, "failed": failed}


def history_export_build(*, export_id: int) -> None:
    """Write the export's file, recording progress; idempotent (a finished export is left
    alone, a retried one starts its file again)."""

    export = HistoryExport.objects.select_related("account").get(pk=export_id)
    # Done, or failed by the sweep (the person was told it could not start): left alone.
    if export.status in (HistoryExport.Status.DONE, HistoryExport.Status.FAILED):
        return
    form = HistoryFilterForm(export.query, account=export.account)
    form.is_valid()
    filters = form.filters()
    total = history_queryset(account=export.account, filters=filters).count()
    started = HistoryExport.objects.filter(
        pk=export.pk, status__in=[HistoryExport.Status.PENDING, HistoryExport.Status.RUNNING]
    ).update(status=HistoryExport.Status.RUNNING, rows_total=total, rows_done=0)
    if not started:  # failed by the sweep meanwhile
        return
    done = 0

    def progress(rows):
        nonlocal done
        done += rows
        HistoryExport.objects.filter(pk=export.pk).update(rows_done=done)

    with tempfile.TemporaryFile("w+b") as handle:
        for line in export_rows(
            account=export.account, filters=filters, fmt=export.format, progress=progress
        ):
            handle.write(line.encode())
        handle.seek(0)
        export.refresh_from_db()
        export.file.save(
            f"history-{export.account_id}-{export.pk}.{export.format}", File(handle), save=False
        )
    export.status = HistoryExport.Status.DONE
    export.finished_at = timezone.now()
    export.save(update_fields=["file", "status", "finished_at"])
