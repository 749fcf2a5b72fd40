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
    """The one way a prompt-log row is written (the gateway's settlement calls it)."""
    return PromptLog.objects.create(
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
