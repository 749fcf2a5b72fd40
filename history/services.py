import json

from history.models import MAX_BODY_CHARACTERS, TRUNCATION_MARKER, PromptLog


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


def history_purge_expired(*, batch_size: int = 5_000, now=None) -> int:
    """Delete each account's prompt-log rows older than its tier's window, in bounded
    batches (short transactions, no long locks); idempotent and resumable: a run that stops
    halfway leaves only older rows for the next run. Returns the rows deleted."""
    import logging
    from datetime import timedelta

    from django.utils import timezone

    from console.models import Tier

    logger = logging.getLogger(__name__)
    now = now or timezone.now()
    deleted = 0
    for tier in Tier.objects.order_by("rank"):
        cutoff = now - timedelta(days=tier.retention_days)
        while True:
            ids = list(
                PromptLog.objects.filter(account__tier=tier, created_at__lt=cutoff)
                .order_by("created_at")
                .values_list("pk", flat=True)[:batch_size]
            )
            if not ids:
                break
            count, _details = PromptLog.objects.filter(pk__in=ids).delete()
            deleted += count
            logger.info("history purge: tier %s deleted %s (total %s)", tier.slug, count, deleted)
    return deleted


def history_delete(*, account, filters, actor, ip=None, batch_size: int = 5_000) -> int:
    """Delete the account's rows the filters select, in batches, with one audit event."""
    from django.db import transaction

    from console.services import audit_record
    from history.selectors import history_queryset

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
