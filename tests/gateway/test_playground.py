"""The playground: a message from the console goes through the API's admission, stream,
charge and prompt log, with no key, source `console`, billed to the account and attributed to
the chosen project."""

import json
import time

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient, Client
from django.urls import reverse

from billing.models import LedgerEntry, ProjectMonthSpend, Wallet
from console.models import Account, Tier
from console.money import NANO_PER_UNIT, format_amount
from console.roles import Role
from console.shared_state import account_hold_key, concurrency_key, project_hold_key
from gateway.settlement import charge_usage
from history.models import PromptLog
from projects.services import project_archive, project_create, project_set_cap
from tests.asynchronous import run_async
from tests.billing.factories import funded_account
from tests.conftest import requires_postgres
from tests.console.test_csp import _check as check_csp
from tests.factories import add_member, make_account, make_user
from usage.models import UsageRecord

pytestmark = [pytest.mark.django_db(transaction=True)]

CHAT = reverse("playground_chat")
MESSAGES = [{"role": "user", "content": "你好，智谱！Hello from the playground"}]


def owner_of(account):
    return account.memberships.get(role=Role.OWNER).user


@pytest.fixture
def funded_owner():
    """A funded account (¥100 recharge, ¥10 bonus, no starter pack), its owner and a second
    project to attribute messages to."""
    account = funded_account(recharge_units=100, bonus_units=10)
    project = project_create(account=account, name="Playground tests")
    return account, owner_of(account), project


async def client_for(user):
    client = AsyncClient()
    if user is not None:
        await client.aforce_login(user)
    return client


async def chat(client, body):
    payload = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return await client.post(CHAT, payload, content_type="application/json")


async def read(response) -> str:
    return b"".join([part async for part in response.streaming_content]).decode()


def text_of(stream: str) -> str:
    chunks = [json.loads(line[6:]) for line in stream.split("\n\n") if line.startswith("data: {")]
    return "".join(
        choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"]
    )


def error_of(response):
    return json.loads(response.content)["error"]["code"]


def nothing_charged(account) -> bool:
    return not LedgerEntry.objects.filter(account=account, kind="charge").exists()


@pytest.mark.embedded
@run_async
async def test_a_message_streams_and_is_billed_exactly_like_an_api_call(funded_owner, key_for):
    account, owner, project = funded_owner
    before = await Wallet.objects.aget(account=account)
    client = await client_for(owner)
    response = await chat(
        client, {"model": "glm-4.7", "project": project.pk, "messages": MESSAGES, "max_tokens": 50}
    )
    assert response.status_code == 200
    assert response["content-type"] == "text/event-stream"
    stream = await read(response)
    assert stream.rstrip().endswith("data: [DONE]")
    reply = text_of(stream)
    assert reply
    request_id = response["x-request-id"]

    # Exactly one usage record: the console's, with no key, in the chosen project.
    records = [record async for record in UsageRecord.objects.filter(account=account)]
    assert len(records) == 1
    record = records[0]
    assert (record.request_id, record.source, record.api_key_id, record.project_id) == (
        request_id,
        UsageRecord.Source.CONSOLE,
        None,
        project.pk,
    )
    assert (record.status, record.stream, record.estimated) == (200, True, False)
    # Priced at the listed CNY prices (¥4.32 / ¥15.84 per 1M tokens), no pack.
    expected_fee = (
        record.input_tokens * 4_320_000_000 + record.output_tokens * 15_840_000_000 + 500_000
    ) // 1_000_000
    assert record.fee_nano == expected_fee > 0
    assert record.fee_nano == record.recharge_nano + record.bonus_nano

    # The wallet moved by exactly the record's fee, in the ledger entry of this request.
    after = await Wallet.objects.aget(account=account)
    assert before.recharge_nano - after.recharge_nano == record.recharge_nano
    assert before.bonus_nano - after.bonus_nano == record.bonus_nano
    entry = await LedgerEntry.objects.aget(account=account, request_id=request_id)
    assert (entry.kind, entry.fee_nano, entry.project_id) == ("charge", record.fee_nano, project.pk)
    spend = await ProjectMonthSpend.objects.aget(project=project)
    assert spend.spent_nano == record.fee_nano

    # The prompt log: attributable to the project, no key, joined by the request id.
    log = await PromptLog.objects.aget(account=account, request_id=request_id)
    assert (log.api_key_id, log.project_id, log.messages, log.response_text) == (
        None,
        project.pk,
        MESSAGES,
        reply,
    )
    assert log.parameters == {"model": "glm-4.7", "stream": True, "max_tokens": 50}

    # The same request through the API with a key costs the same.
    raw, _key = await sync_to_async(key_for)(account, project=project)
    api = await AsyncClient().post(
        "/api/paas/v4/chat/completions",
        json.dumps({"model": "glm-4.7", "messages": MESSAGES, "max_tokens": 50, "stream": True}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )
    assert text_of(await read(api)) == reply
    api_record = await UsageRecord.objects.aget(request_id=api["x-request-id"])
    assert api_record.source == UsageRecord.Source.API
    assert (api_record.input_tokens, api_record.output_tokens, api_record.fee_nano) == (
        record.input_tokens,
        record.output_tokens,
        record.fee_nano,
    )


@pytest.mark.embedded
@run_async
async def test_slots_and_reservations_are_released(funded_owner, fresh_shared_state):
    account, owner, project = funded_owner
    client = await client_for(owner)
    for model in ("glm-4.7", "no-such-model"):
        response = await chat(client, {"model": model, "project": project.pk, "messages": MESSAGES})
        if response.status_code == 200:
            await read(response)
    state = fresh_shared_state
    assert await sync_to_async(state.slot_count)(concurrency_key(account.pk)) == 0
    assert await sync_to_async(state.held)(account_hold_key(account.pk)) == 0
    assert await sync_to_async(state.held)(project_hold_key(project.pk)) == 0


@run_async
async def test_the_result_fragment_shows_the_messages_tokens_and_cost(funded_owner, key_for):
    account, owner, project = funded_owner
    client = await client_for(owner)
    response = await chat(client, {"model": "glm-4.7", "project": project.pk, "messages": MESSAGES})
    await read(response)
    record = await UsageRecord.objects.aget(request_id=response["x-request-id"])
    result = await client.get(reverse("playground_result", args=[record.request_id]))
    assert result.status_code == 200
    html = result.content.decode()
    assert "<html" not in html  # a fragment, not a page
    for amount in (record.fee_nano, record.recharge_nano, record.bonus_nano):
        assert format_amount(amount, "CNY", places=None) in html
    assert f"{record.input_tokens} input" in html and f"{record.output_tokens} output" in html
    assert project.name in html
    log = await PromptLog.objects.aget(request_id=record.request_id)
    assert reverse("history:detail", args=[log.pk]) in html
    detail = await client.get(reverse("history:detail", args=[log.pk]))
    assert "sent from the console" in detail.content.decode()

    # Another account's owner, a malformed id and an API request's id: 404.
    stranger = await sync_to_async(make_account)(await sync_to_async(make_user)())
    other = await client_for(await sync_to_async(owner_of)(stranger))
    assert (
        await other.get(reverse("playground_result", args=[record.request_id]))
    ).status_code == 404
    assert (
        await client.get(reverse("playground_result", args=["not-a-request-id"]))
    ).status_code == 404
    assert (await client.get(reverse("playground_result", args=["x" * 32]))).status_code == 404
    raw, _key = await sync_to_async(key_for)(account)
    api = await AsyncClient().post(
        "/api/paas/v4/chat/completions",
        json.dumps({"model": "glm-4.7", "messages": MESSAGES}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )
    api_result = await client.get(reverse("playground_result", args=[api["x-request-id"]]))
    assert api_result.status_code == 404


@pytest.mark.embedded
@run_async
async def test_in_arrears_a_paid_model_is_refused_with_a_record_and_a_free_one_answers():
    account = await sync_to_async(funded_account)(recharge_units=1)
    project = await sync_to_async(lambda: account.projects.get(is_default=True))()
    await sync_to_async(charge_usage)(
        account=account, model="glm-4.7", input_tokens=0, output_tokens=1_000_000, request_id="big"
    )
    before = await Wallet.objects.aget(account=account)
    client = await client_for(await sync_to_async(owner_of)(account))
    response = await chat(client, {"model": "glm-4.7", "project": project.pk, "messages": MESSAGES})
    assert (response.status_code, response["content-type"]) == (429, "application/json")
    body = json.loads(response.content)
    assert body["error"]["code"] == "1113" and body["error"]["message"]
    record = await UsageRecord.objects.aget(request_id=response["x-request-id"])
    assert (record.status, record.code, record.fee_nano, record.source, record.api_key_id) == (
        429,
        "1113",
        0,
        UsageRecord.Source.CONSOLE,
        None,
    )
    assert record.project_id == project.pk
    after = await Wallet.objects.aget(account=account)
    assert (after.recharge_nano, after.bonus_nano, after.arrears_nano) == (
        before.recharge_nano,
        before.bonus_nano,
        before.arrears_nano,
    )
    free = await chat(
        client, {"model": "glm-4.7-flash", "project": project.pk, "messages": MESSAGES}
    )
    assert free.status_code == 200 and text_of(await read(free))


@pytest.mark.embedded
@run_async
async def test_a_block_mode_cap_on_the_chosen_project_refuses_once_reached(funded_owner):
    account, owner, project = funded_owner
    await sync_to_async(project_set_cap)(
        project=project, cap_nano=NANO_PER_UNIT // 100_000, mode="block", actor=None
    )
    client = await client_for(owner)
    body = {"model": "glm-4.7", "project": project.pk, "messages": MESSAGES}
    first = await chat(client, body)
    assert first.status_code == 200  # spends past the tiny cap
    await read(first)
    second = await chat(client, body)
    assert (second.status_code, error_of(second)) == (429, "1122")
    record = await UsageRecord.objects.aget(request_id=second["x-request-id"])
    assert (record.code, record.fee_nano, record.project_id) == ("1122", 0, project.pk)
    # The cap is the project's: the Default project still answers.
    default = await sync_to_async(lambda: account.projects.get(is_default=True))()
    other = await chat(client, {**body, "project": default.pk})
    assert other.status_code == 200
    await read(other)


@pytest.mark.embedded
@run_async
async def test_the_tier_rate_limit_counts_playground_messages(funded_owner):
    account, owner, project = funded_owner
    tier = await Tier.objects.acreate(
        slug="tiny", name="Tiny", rank=99, retention_days=1, requests_per_minute=1, concurrency=5
    )
    await Account.objects.filter(pk=account.pk).aupdate(tier=tier)
    client = await client_for(owner)
    body = {"model": "glm-4.7-flash", "project": project.pk, "messages": MESSAGES}
    await read(await chat(client, body))
    refused = await chat(client, body)
    assert (refused.status_code, error_of(refused)) == (429, "1303")
    assert refused["x-ratelimit-limit-requests"] == "1"


@run_async
async def test_a_suspended_account_and_an_archived_project_are_refused_with_a_record(
    funded_owner,
):
    account, owner, project = funded_owner
    await sync_to_async(project_archive)(project=project, actor=None)
    client = await client_for(owner)
    archived = await chat(client, {"model": "glm-4.7", "project": project.pk, "messages": MESSAGES})
    assert (archived.status_code, error_of(archived)) == (403, "1121")
    default = await sync_to_async(lambda: account.projects.get(is_default=True))()
    await Account.objects.filter(pk=account.pk).aupdate(status="suspended")
    suspended = await chat(
        client, {"model": "glm-4.7", "project": default.pk, "messages": MESSAGES}
    )
    assert (suspended.status_code, error_of(suspended)) == (403, "1120")
    codes = [
        code
        async for code in UsageRecord.objects.filter(account=account)
        .order_by("pk")
        .values_list("code", flat=True)
    ]
    assert codes == ["1121", "1120"]
    assert await sync_to_async(nothing_charged)(account)


@pytest.mark.parametrize("role", [Role.FINANCE, Role.VIEWER])
@run_async
async def test_finance_and_viewers_may_not_use_the_playground(funded_owner, role):
    account, _owner, project = funded_owner
    member = await sync_to_async(add_member)(account, role)
    client = await client_for(await sync_to_async(lambda: member.user)())
    assert (await client.get(reverse("playground"))).status_code == 403
    response = await chat(client, {"model": "glm-4.7", "project": project.pk, "messages": MESSAGES})
    assert response.status_code == 403
    assert not await UsageRecord.objects.filter(account=account).aexists()
    assert await sync_to_async(nothing_charged)(account)


@run_async
async def test_anonymous_visitors_are_sent_to_sign_in(funded_owner):
    _account, _owner, project = funded_owner
    client = await client_for(None)
    for response in (
        await client.get(reverse("playground")),
        await chat(client, {"model": "glm-4.7", "project": project.pk, "messages": MESSAGES}),
    ):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    assert not await UsageRecord.objects.aexists()


@run_async
async def test_the_chat_takes_only_posts(funded_owner):
    _account, owner, _project = funded_owner
    client = await client_for(owner)
    assert (await client.get(CHAT)).status_code == 405


@pytest.mark.embedded
@run_async
async def test_another_accounts_project_is_404_and_nothing_is_charged(funded_owner):
    account, _owner, project = funded_owner
    stranger_account = await sync_to_async(funded_account)(recharge_units=10)
    stranger = await client_for(await sync_to_async(owner_of)(stranger_account))
    response = await chat(
        stranger, {"model": "glm-4.7", "project": project.pk, "messages": MESSAGES}
    )
    assert (response.status_code, error_of(response)) == (404, "1210")
    assert not await UsageRecord.objects.aexists()
    assert await sync_to_async(nothing_charged)(account)
    assert await sync_to_async(nothing_charged)(stranger_account)


@pytest.mark.parametrize(
    ("body", "status", "code", "recorded"),
    [
        ("{not json", 400, "1210", False),
        (b"\xff\xfe\x00garbage", 400, "1210", False),
        ([1, 2, 3], 400, "1210", False),
        ({"model": "glm-4.7", "messages": MESSAGES}, 404, "1210", False),
        ({"model": "glm-4.7", "project": "abc", "messages": MESSAGES}, 404, "1210", False),
        ({"model": "glm-4.7", "project": 2**70, "messages": MESSAGES}, 404, "1210", False),
        ({"model": "glm-4.7", "project": True, "messages": MESSAGES}, 404, "1210", False),
        ({"model": "glm-4.7", "project": "²", "messages": MESSAGES}, 404, "1210", False),
        ({"model": "glm-4.7", "project": "9" * 5000, "messages": MESSAGES}, 404, "1210", False),
        # With a project of the account: refused like the API, with a record.
        ({"model": "glm-4.7", "project": "P"}, 400, "1214", True),
        ({"model": "glm-4.7", "project": "P", "messages": []}, 400, "1214", True),
        ({"model": "glm-4.7", "project": "P", "messages": [{"content": "x"}]}, 400, "1214", True),
        ({"model": "gpt-17", "project": "P", "messages": MESSAGES}, 400, "1211", True),
        ({"project": "P", "messages": MESSAGES}, 400, "1210", True),
        (
            {"model": "glm-4.7", "project": "P", "messages": MESSAGES, "max_tokens": 0},
            400,
            "1210",
            True,
        ),
        (
            {"model": "glm-4.7", "project": "P", "messages": MESSAGES, "temperature": 9},
            400,
            "1210",
            True,
        ),
    ],
)
@run_async
async def test_bad_input_is_refused_and_costs_nothing(funded_owner, body, status, code, recorded):
    account, owner, project = funded_owner
    if isinstance(body, dict) and body.get("project") == "P":
        body = {**body, "project": project.pk}
    before = await Wallet.objects.aget(account=account)
    response = await chat(await client_for(owner), body)
    assert (response.status_code, error_of(response)) == (status, code)
    assert response["x-request-id"]
    after = await Wallet.objects.aget(account=account)
    assert (after.recharge_nano, after.bonus_nano) == (before.recharge_nano, before.bonus_nano)
    assert await sync_to_async(nothing_charged)(account)
    records = [record async for record in UsageRecord.objects.filter(account=account)]
    assert len(records) == int(recorded)
    if recorded:
        assert (records[0].status, records[0].code, records[0].fee_nano) == (status, code, 0)
        assert records[0].source == UsageRecord.Source.CONSOLE


@run_async
async def test_a_body_over_the_limit_is_413_and_costs_nothing(funded_owner, settings):
    account, owner, project = funded_owner
    settings.GATEWAY_MAX_BODY_BYTES = 1_000
    big = {
        "model": "glm-4.7",
        "project": project.pk,
        "messages": [{"role": "user", "content": "x" * 5_000}],
    }
    response = await chat(await client_for(owner), big)
    assert (response.status_code, error_of(response)) == (413, "1210")
    assert not await UsageRecord.objects.aexists()
    assert await sync_to_async(nothing_charged)(account)


def test_the_page_lists_callable_models_and_active_projects_under_the_csp(funded_owner, client):
    account, owner, project = funded_owner
    archived = project_create(account=account, name="Old project")
    project_archive(project=archived, actor=None)
    client.force_login(owner)
    response = client.get(reverse("playground"))
    assert response.status_code == 200
    check_csp(response)
    html = response.content.decode()
    assert 'value="glm-4.7"' in html and 'value="glm-4.7-flash"' in html
    assert "Playground tests" in html and "Old project" not in html
    assert "billed like API calls" in html
    assert 'src="/static/console/playground.js"' in html
    assert f'href="{reverse("playground")}" aria-current="page"' in html


def test_without_a_callable_model_the_page_says_what_to_do(funded_owner, client):
    from gateway.models import UpstreamRoute

    _account, owner, _project = funded_owner
    UpstreamRoute.objects.update(enabled=False)
    client.force_login(owner)
    html = client.get(reverse("playground")).content.decode()
    assert "No model can be called in CNY yet" in html
    assert "playground.js" not in html


@requires_postgres
def test_the_reply_streams_over_uvicorn_with_the_sessions_csrf_token(funded_owner, uvicorn_site):
    """The real server: the session cookie and CSRF token of the page, chunks arriving over
    time (not buffered), and a POST without the token refused."""
    account, owner, project = funded_owner
    session = Client()
    session.force_login(owner)
    cookies = {"sessionid": session.cookies["sessionid"].value}
    with httpx.Client(base_url=uvicorn_site, cookies=cookies, timeout=30) as http:
        page = http.get(reverse("playground"))
        assert page.status_code == 200
        token = http.cookies["csrftoken"]
        body = {
            "model": "glm-4.7",
            "project": project.pk,
            "messages": MESSAGES,
            "max_tokens": 60,
        }
        forged = http.post(CHAT, json=body)
        assert forged.status_code == 403
        arrivals = []
        with http.stream("POST", CHAT, json=body, headers={"X-CSRFToken": token}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            request_id = response.headers["x-request-id"]
            for line in response.iter_lines():
                if line.startswith("data:"):
                    arrivals.append((time.monotonic(), line))
    assert arrivals[-1][1] == "data: [DONE]"
    # 60 chunks 5 ms apart: the first arrived well before the last.
    assert arrivals[-1][0] - arrivals[1][0] > 0.1
    record = UsageRecord.objects.get(account=account)
    assert (record.request_id, record.source, record.api_key_id, record.status) == (
        request_id,
        UsageRecord.Source.CONSOLE,
        None,
        200,
    )


@run_async
async def test_an_upstream_failure_ends_the_stream_with_an_error_and_costs_nothing(funded_owner):
    from gateway.models import UpstreamRoute

    account, owner, project = funded_owner
    await UpstreamRoute.objects.filter(model="glm-4.7").aupdate(
        base_url="http://127.0.0.1:9/v1", timeout_seconds=2
    )
    client = await client_for(owner)
    response = await chat(client, {"model": "glm-4.7", "project": project.pk, "messages": MESSAGES})
    stream = await read(response)
    assert '"error":{"code":"1230"' in stream and "[DONE]" not in stream
    record = await UsageRecord.objects.aget(request_id=response["x-request-id"])
    assert (record.status, record.code, record.fee_nano, record.source) == (
        502,
        "1230",
        0,
        "console",
    )
    assert await sync_to_async(nothing_charged)(account)
    result = await client.get(reverse("playground_result", args=[record.request_id]))
    assert "nothing was charged" in result.content.decode()


@run_async
async def test_a_reply_the_upstream_cut_off_shows_what_its_delivered_part_cost(funded_owner):
    """The upstream broke off after part of the reply was shown: that part is charged, and
    the result says what it cost, not that nothing was charged."""
    from billing.selectors import estimate_request
    from gateway import services, settlement

    account, owner, project = funded_owner
    body = {"model": "glm-4.7", "messages": MESSAGES, "stream": True}
    estimate = await sync_to_async(estimate_request)(
        account=account, model="glm-4.7", messages=MESSAGES, max_tokens=None, body=body
    )
    admitted = services.Admitted(
        auth=services.console_caller(account=account, project=project),
        route=None,
        estimate=estimate,
        request_id=services.new_request_id(),
        reserved_nano=0,
    )
    cut_off = services.Outcome(
        status=502,
        code="1230",
        input_tokens=estimate.input_tokens,
        output_tokens=5,
        estimated=True,
        partial=True,
        response_text="智谱 GLM model answers",
    )
    record = await sync_to_async(settlement.settle)(
        admitted=admitted, body=body, outcome=cut_off, client_request_id="", stream=True
    )
    assert record.fee_nano > 0
    client = await client_for(owner)
    html = (
        await client.get(reverse("playground_result", args=[record.request_id]))
    ).content.decode()
    assert "nothing was charged" not in html
    assert "usage-cost" in html
