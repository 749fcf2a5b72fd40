"""The Anthropic-compatible endpoint through Django's ASGI handler (issue 23): the exact event
sequence, pings while the upstream is silent, an error mid-stream, the endpoint's own body
limit, malformed and hostile requests answered in Anthropic's shape, a route whose upstream
speaks Anthropic's protocol (forwarded as it is, a real HTTP server on loopback recording what
it got), the recorded Claude Code request, count_tokens' rate window, and the agent-loop
prompt rule with tool_result blocks on a coding plan."""

import json
from pathlib import Path

import pytest
from django.test import AsyncClient, override_settings

from billing.models import LedgerEntry
from billing.reconciliation import audit_all
from console.models import Account, Tier
from console.secrets_at_rest import encrypt_secret
from console.shared_state import shared_state
from gateway.models import ModelAlias, Protocol, UpstreamRoute
from history.models import PromptLog
from tests.asynchronous import run_async
from tests.gateway.test_odd_upstreams import OddUpstream
from tests.gateway.test_outages import nothing_held
from usage.models import UsageRecord

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]

URL = "/api/anthropic/v1/messages"
BODY = {"model": "glm-4.7", "max_tokens": 50, "messages": [{"role": "user", "content": "你好"}]}
CLAUDE_CODE = json.loads(
    (Path(__file__).parent / "fixtures" / "claude_code_request.json").read_text()
)


async def post(raw, body=BODY, *, url=URL, headers=None):
    payload = body if isinstance(body, str | bytes) else json.dumps(body)
    auth = {"x-api-key": raw} if raw else {}
    return await AsyncClient().post(
        url, payload, content_type="application/json", headers={**auth, **(headers or {})}
    )


async def events_of(response) -> list[tuple[str, dict]]:
    """A stream's (event name, data) pairs; the name must repeat the data's type."""
    text = "".join(
        [part.decode() async for part in response.streaming_content]  # type: ignore[union-attr]
    )
    events = []
    for block in text.strip().split("\n\n"):
        name_line, data_line = block.split("\n")
        name, data = name_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: "))
        assert data["type"] == name
        events.append((name, data))
    return events


def error_of(response) -> dict:
    body = json.loads(response.content)
    assert body["type"] == "error" and body["request_id"] == response["request-id"]
    return body["error"]


@run_async
async def test_a_stream_has_anthropics_exact_event_sequence(funded):
    _account, raw, _key = funded
    response = await post(raw, {**BODY, "stream": True, "simulator": {"output_tokens": 3}})
    assert response.status_code == 200 and response["content-type"] == "text/event-stream"
    names = [name for name, _data in await events_of(response)]
    assert names == [
        "message_start",
        "ping",  # as Anthropic sends one after message_start
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


@run_async
@override_settings(GATEWAY_ANTHROPIC_PING_SECONDS=0.05)
async def test_pings_fill_the_silence_while_the_upstream_thinks(funded):
    _account, raw, _key = funded
    body = {**BODY, "stream": True, "simulator": {"first_token_ms": 400, "output_tokens": 2}}
    names = [name for name, _data in await events_of(await post(raw, body))]
    first_block = names.index("content_block_start")
    assert names[0] == "message_start" and names[1:first_block].count("ping") >= 2
    assert names[-1] == "message_stop"


@run_async
async def test_an_upstream_failing_mid_stream_ends_with_an_error_event_and_bills_the_part(funded):
    account, raw, _key = funded
    body = {**BODY, "stream": True, "simulator": {"output_tokens": 20, "fail_after_tokens": 4}}
    events = await events_of(await post(raw, body))
    name, data = events[-1]
    assert name == "error" and data["error"]["type"] == "api_error"
    assert data["error"]["message"].startswith("1230")
    assert "message_stop" not in [name for name, _data in events]
    record = await UsageRecord.objects.aget(account=account)
    assert (record.status, record.code, record.output_tokens) == (500, "1230", 4)
    assert record.fee_nano > 0
    await nothing_held(shared_state(), account)


@run_async
async def test_the_settlement_commits_before_message_stop(funded):
    account, raw, _key = funded
    response = await post(raw, {**BODY, "stream": True})
    async for part in response.streaming_content:
        if b"event: message_stop" in part:
            record = await UsageRecord.objects.aget(account=account)
            assert record.status == 200 and record.fee_nano > 0
            break
    else:
        raise AssertionError("no message_stop")


@run_async
async def test_the_body_limit_is_the_endpoints_own(funded):
    account, raw, _key = funded
    big = "长" * (2 * 1024 * 1024)  # 6 MiB of UTF-8: over the OpenAI endpoint's 4 MiB
    body = {**BODY, "max_tokens": 1, "messages": [{"role": "user", "content": big}]}
    response = await post(raw, body)
    assert response.status_code == 200, response.content[:300]
    openai = await AsyncClient().post(
        "/api/paas/v4/chat/completions",
        json.dumps({"model": "glm-4.7", "messages": body["messages"]}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )
    assert openai.status_code == 413
    with override_settings(GATEWAY_ANTHROPIC_MAX_BODY_BYTES=1000):
        response = await post(raw, body)
    assert response.status_code == 413
    assert error_of(response)["type"] == "request_too_large"
    assert await UsageRecord.objects.filter(account=account).acount() == 1


@run_async
@pytest.mark.parametrize(
    ("payload", "status", "kind"),
    [
        ("{not json", 400, "invalid_request_error"),
        (
            '{"model": "glm-4.7", "max_tokens": 5, "messages": [{"role": "user", "content": "\\u0000"}]}',
            400,
            "invalid_request_error",
        ),
        (
            {"model": "glm-4.7", "messages": [{"role": "user", "content": "x"}]},
            400,
            "invalid_request_error",
        ),
        (
            {**BODY, "messages": [{"role": "user", "content": [{"type": "tool_use"}]}]},
            400,
            "invalid_request_error",
        ),
        ({**BODY, "model": "x" * 101}, 400, "invalid_request_error"),
        ({**BODY, "model": "no-such-model"}, 404, "not_found_error"),
        ({**BODY, "model": "' OR 1=1 --"}, 404, "not_found_error"),
        ([1, 2, 3], 400, "invalid_request_error"),
    ],
)
async def test_malformed_and_hostile_requests_are_refused_in_anthropics_shape(
    funded, payload, status, kind
):
    account, raw, _key = funded
    response = await post(raw, payload)
    assert response.status_code == status
    error = error_of(response)
    assert error["type"] == kind and error["message"]
    record = await UsageRecord.objects.aget(account=account)
    assert (record.status, record.fee_nano, record.endpoint) == (status, 0, "anthropic")
    assert not await LedgerEntry.objects.filter(account=account, kind="charge").aexists()
    assert not await PromptLog.objects.filter(account=account).aexists()


@run_async
async def test_no_key_a_wrong_key_and_a_wrong_method(funded):
    _account, raw, _key = funded
    missing = await post(None)
    assert (missing.status_code, error_of(missing)["type"]) == (401, "authentication_error")
    wrong = await post("sk-not-a-key")
    assert (wrong.status_code, error_of(wrong)["type"]) == (401, "authentication_error")
    bearer = await post(None, headers={"Authorization": f"Bearer {raw}"})
    assert bearer.status_code == 200
    get = await AsyncClient().get(URL, headers={"x-api-key": raw})
    assert (get.status_code, error_of(get)["type"]) == (405, "invalid_request_error")


@pytest.fixture
def anthropic_upstream(funded):
    upstream = OddUpstream()
    UpstreamRoute.objects.filter(model="glm-4.7").update(
        base_url=f"http://127.0.0.1:{upstream.server.server_port}/api/anthropic",
        protocol=Protocol.ANTHROPIC,
        upstream_model="glm-4.7-upstream",
        secret_encrypted=encrypt_secret("sk-upstream"),
        timeout_seconds=5,
    )
    yield upstream
    upstream.server.shutdown()


@run_async
async def test_an_anthropic_upstream_gets_the_request_as_sent_and_bills_its_usage(
    funded, anthropic_upstream
):
    account, raw, _key = funded
    message = {
        "id": "msg_up",
        "type": "message",
        "role": "assistant",
        "model": "glm-4.7-upstream",
        "content": [{"type": "text", "text": "来自上游"}],
        "stop_reason": "stop_sequence",
        "stop_sequence": "END",
        "usage": {"input_tokens": 7, "cache_read_input_tokens": 100, "output_tokens": 9},
    }
    anthropic_upstream.answers_json(message)
    body = {
        **BODY,
        "model": "claude-sonnet-4-5",
        "stop_sequences": ["END"],
        "context_management": {"edits": [{"type": "clear_thinking_20251015"}]},
        "output_config": {"effort": "high"},
    }
    response = await post(raw, body, headers={"anthropic-beta": "claude-code-20250219"})
    assert response.status_code == 200
    answer = json.loads(response.content)
    assert answer["model"] == "claude-sonnet-4-5" and answer["stop_reason"] == "stop_sequence"
    path, headers, forwarded = anthropic_upstream.requests[0]
    forwarded = json.loads(forwarded)
    assert path == "/api/anthropic/v1/messages"
    assert forwarded == {**body, "model": "glm-4.7-upstream"}  # unknown fields kept
    assert headers["x-api-key"] == "sk-upstream" and raw not in json.dumps(headers)
    assert headers["anthropic-beta"] == "claude-code-20250219"
    record = await UsageRecord.objects.aget(account=account)
    assert (record.input_tokens, record.output_tokens, record.estimated) == (107, 9, False)
    assert (record.model, record.requested_model) == ("glm-4.7", "claude-sonnet-4-5")
    log = await PromptLog.objects.aget(request_id=record.request_id)
    assert log.response_text == "来自上游"


@run_async
async def test_an_anthropic_upstreams_stream_is_passed_on_and_billed_from_its_events(
    funded, anthropic_upstream
):
    account, raw, _key = funded
    upstream_events = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_up",
                "type": "message",
                "role": "assistant",
                "model": "glm-4.7-upstream",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 12, "output_tokens": 1},
            },
        },
        {"type": "ping"},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "好"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 5},
        },
        {"type": "message_stop"},
    ]
    anthropic_upstream.content_type = "text/event-stream"
    anthropic_upstream.answer = "".join(
        f"event: {event['type']}\ndata: {json.dumps(event)}\n\n" for event in upstream_events
    ).encode()
    events = await events_of(await post(raw, {**BODY, "stream": True}))
    assert [data for _name, data in events][1:] == upstream_events[1:]
    assert events[0][1]["message"]["model"] == "glm-4.7"  # as the client named it
    record = await UsageRecord.objects.aget(account=account)
    assert (record.input_tokens, record.output_tokens, record.estimated) == (12, 5, False)
    assert record.fee_nano > 0
    assert await sync_audit() == []


async def sync_audit():
    from asgiref.sync import sync_to_async

    return (await sync_to_async(audit_all)())[1]


@run_async
async def test_the_recorded_claude_code_request_is_accepted_as_sent(funded):
    account, raw, _key = funded
    headers = {
        name: value
        for name, value in CLAUDE_CODE["headers"].items()
        if name.lower()
        not in ("x-api-key", "authorization", "content-type", "content-length", "host")
    }
    response = await post(
        raw, CLAUDE_CODE["body"], url=f"{URL}?{CLAUDE_CODE['query']}", headers=headers
    )
    assert response.status_code == 200
    events = await events_of(response)
    assert events[-1][0] == "message_stop"
    record = await UsageRecord.objects.aget(account=account)
    assert record.requested_model == CLAUDE_CODE["body"]["model"]
    assert record.model == "glm-4.7" and record.status == 200


@run_async
async def test_count_tokens_counts_in_the_rate_window_and_records_nothing(funded):
    from asgiref.sync import sync_to_async

    account, raw, _key = funded
    tier = await Tier.objects.acreate(
        slug="tiny", name="Tiny", rank=60, retention_days=1, requests_per_minute=3, concurrency=2
    )
    await Account.objects.filter(pk=account.pk).aupdate(tier=tier)
    body = {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "数一数 tokens"}]}
    url = URL + "/count_tokens"
    first = await post(raw, body, url=url)
    assert first.status_code == 200 and json.loads(first.content)["input_tokens"] > 0
    assert (await post(raw, {"model": "claude-haiku-4-5"}, url=url)).status_code == 400
    assert (await post(raw, body, url=url)).status_code == 200
    limited = await post(raw, body, url=url)
    assert (limited.status_code, error_of(limited)["type"]) == (429, "rate_limit_error")
    assert error_of(limited)["message"].startswith("1303")
    assert not await UsageRecord.objects.filter(account=account).aexists()
    assert not await PromptLog.objects.filter(account=account).aexists()
    await sync_to_async(account.refresh_from_db)()


@run_async
async def test_an_alias_table_edit_is_served_at_once(funded):
    account, raw, _key = funded
    await ModelAlias.objects.acreate(pattern="claude-sonnet-4-5-20250929", model="glm-4.5-air")
    response = await post(raw, {**BODY, "model": "Claude-Sonnet-4-5-20250929"})
    assert response.status_code == 200
    record = await UsageRecord.objects.aget(account=account)
    assert record.model == "glm-4.5-air"  # the exact name wins over claude-*sonnet*
    await ModelAlias.objects.all().adelete()
    gone = await post(raw, {**BODY, "model": "claude-sonnet-4-5"})
    assert (gone.status_code, error_of(gone)["type"]) == (404, "not_found_error")


@run_async
async def test_model_names_match_whatever_their_case_on_the_openai_endpoint_too(funded):
    account, raw, _key = funded
    response = await AsyncClient().post(
        "/api/paas/v4/chat/completions",
        json.dumps({"model": "GLM-4.7", "messages": [{"role": "user", "content": "hi"}]}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )
    assert response.status_code == 200
    assert (await UsageRecord.objects.aget(account=account)).model == "glm-4.7"


@run_async
async def test_a_tool_result_turn_counts_as_a_continuation_on_the_plan(key_for):
    from asgiref.sync import sync_to_async

    from plans.models import Plan
    from plans.services import plan_subscribe
    from tests.billing.factories import funded_account

    account = await sync_to_async(funded_account)(recharge_units=1_000)
    lite = await Plan.objects.aget(code="lite")
    await sync_to_async(plan_subscribe)(account=account, plan=lite, period="month", actor=None)
    raw, _key = await sync_to_async(key_for)(account)
    question = {"role": "user", "content": "run the tests"}
    call = {"type": "tool_use", "id": "toolu_1", "name": "bash", "input": {"command": "pytest"}}
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "3 passed"}
    reminder = {"type": "text", "text": "<system-reminder>todo list unchanged</system-reminder>"}
    new = await post(raw, {**BODY, "messages": [question]})
    loop = await post(
        raw,
        {
            **BODY,
            "messages": [
                question,
                {"role": "assistant", "content": [call]},
                {"role": "user", "content": [result, reminder]},
            ],
        },
    )
    first = await UsageRecord.objects.aget(request_id=new["request-id"])
    second = await UsageRecord.objects.aget(request_id=loop["request-id"])
    assert first.quota_milli == 1000
    assert 0 < second.quota_milli < 1000  # the agent's own turn, not a new prompt
    assert first.fee_nano == second.fee_nano == 0


@run_async
async def test_usage_analytics_sees_the_endpoint(funded):
    from usage.models import UsageDaily, UsageHourly

    account, raw, _key = funded
    await post(raw)
    await AsyncClient().post(
        "/api/paas/v4/chat/completions",
        json.dumps({"model": "glm-4.7", "messages": [{"role": "user", "content": "hi"}]}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )
    for model in (UsageHourly, UsageDaily):
        rows = model.objects.filter(account=account).order_by("endpoint")
        assert [(r.endpoint, r.requests) async for r in rows] == [("anthropic", 1), ("openai", 1)]


def test_every_api_view_marked_for_the_fast_path_is_under_a_fast_path_prefix():
    """A view marked gateway_fast_path outside console.middleware.GATEWAY_PREFIXES would
    take the whole page stack (about twenty thread hops under ASGI): the Anthropic endpoint
    did, at first, and answered 1.2x slower than the coding endpoint in bench/gateway.py."""
    from django.urls import URLResolver, get_resolver

    from console.middleware import GATEWAY_PREFIXES

    def walk(patterns, prefix):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif getattr(pattern.callback, "gateway_fast_path", False):
                yield prefix + str(pattern.pattern)

    marked = list(walk(get_resolver().url_patterns, "/"))
    assert "/api/anthropic/v1/messages" in marked
    assert [path for path in marked if not path.startswith(GATEWAY_PREFIXES)] == []


@run_async
async def test_the_anthropic_endpoint_skips_the_page_stack(funded):
    _account, raw, _key = funded
    response = await post(raw)
    assert response.status_code == 200
    # The page middleware would add these (sessions, language, CSP).
    for header in ("Vary", "Content-Language", "Content-Security-Policy", "Set-Cookie"):
        assert header not in response, header


@run_async
async def test_a_refused_alias_is_recorded_under_the_model_that_would_have_served_it(funded):
    from asgiref.sync import sync_to_async

    from console.money import NANO_PER_UNIT
    from projects.services import project_set_cap

    account, raw, key = funded
    project = await sync_to_async(lambda: key.project)()
    await sync_to_async(project_set_cap)(
        project=project, cap_nano=NANO_PER_UNIT // 100_000, mode="block", actor=None
    )
    body = {**BODY, "model": "claude-sonnet-4-5"}
    assert (await post(raw, body)).status_code == 200  # the first spends past the tiny cap
    refused = await post(raw, body)
    assert (refused.status_code, error_of(refused)["code"]) == (429, "1122")
    # Anthropic's SDKs retry a 429; a cap needs a person, so they are told not to.
    assert refused["x-should-retry"] == "false"
    record = await UsageRecord.objects.aget(request_id=refused["request-id"])
    assert (record.model, record.requested_model) == ("glm-4.7", "claude-sonnet-4-5")
    unknown = await post(raw, {**BODY, "model": "claude-unknown-9"})
    assert unknown.status_code == 404
    record = await UsageRecord.objects.aget(request_id=unknown["request-id"])
    assert (record.model, record.requested_model) == ("claude-unknown-9", "")


@pytest.fixture
def openai_upstream(funded):
    upstream = OddUpstream()
    UpstreamRoute.objects.filter(model="glm-4.7").update(
        base_url=f"http://127.0.0.1:{upstream.server.server_port}/v1", timeout_seconds=5
    )
    yield upstream
    upstream.server.shutdown()


@run_async
async def test_an_upstream_that_refuses_the_request_is_a_400_with_its_words_not_a_500(
    funded, openai_upstream
):
    account, raw, _key = funded
    openai_upstream.status = 400
    openai_upstream.answers_json({"error": {"code": "1261", "message": "Prompt 超长"}})
    response = await post(raw)
    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "invalid_request_error" and error["code"] == "1261"
    assert error["message"] == "1261: The model service refused the request. Prompt 超长"
    assert "x-should-retry" not in response
    record = await UsageRecord.objects.aget(request_id=response["request-id"])
    assert (record.status, record.code, record.fee_nano) == (400, "1261", 0)
    openai_upstream.status = 429
    busy = await post(raw)
    assert (busy.status_code, error_of(busy)["type"]) == (529, "overloaded_error")
    openai_upstream.status = 404  # a route pointing nowhere: the gateway's fault
    lost = await post(raw)
    assert (lost.status_code, error_of(lost)["type"]) == (500, "api_error")
    await nothing_held(shared_state(), account)
    assert not await LedgerEntry.objects.filter(account=account, kind="charge").aexists()


@run_async
async def test_an_anthropic_upstreams_refusal_reaches_a_stream_as_its_error_event(
    funded, anthropic_upstream
):
    account, raw, _key = funded
    anthropic_upstream.status = 400
    anthropic_upstream.answers_json(
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": "prompt is too long: 210000 tokens > 200000 maximum",
            },
        }
    )
    events = await events_of(await post(raw, {**BODY, "stream": True}))
    name, data = events[-1]
    assert name == "error" and data["error"]["type"] == "invalid_request_error"
    assert "prompt is too long" in data["error"]["message"]
    record = await UsageRecord.objects.aget(account=account)
    assert (record.status, record.code, record.fee_nano) == (400, "1210", 0)
