"""The official openai SDK against the site served by uvicorn in a subprocess (live_server is
WSGI and buffers streams). PostgreSQL only: the server process must see the test data."""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from billing.models import LedgerEntry, Wallet
from billing.reconciliation import audit_all
from console.shared_state import account_hold_key, concurrency_key, shared_state
from history.models import PromptLog
from keys.services import api_key_revoke
from tests.conftest import requires_postgres
from usage.models import UsageRecord

pytestmark = [requires_postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def server(uvicorn_site):
    return uvicorn_site + "/api/paas/v4/"


def test_the_sdk_non_stream_and_stream_get_the_simulator_and_exact_records(server, funded):
    account, raw, key = funded
    client = openai.OpenAI(api_key=raw, base_url=server, max_retries=0)
    reply = client.chat.completions.create(
        model="glm-4.7",
        messages=[{"role": "user", "content": "你好，智谱AI开放平台"}],
        max_tokens=40,
    )
    assert reply.choices[0].message.content
    chunks = list(
        client.chat.completions.create(
            model="glm-4.7",
            messages=[{"role": "user", "content": "Stream please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    streamed_text = "".join(
        choice.delta.content or "" for chunk in chunks for choice in chunk.choices
    )
    usage = next(chunk.usage for chunk in chunks if chunk.usage)
    assert streamed_text
    records = {record.stream: record for record in UsageRecord.objects.filter(account=account)}
    assert (records[False].input_tokens, records[False].output_tokens) == (
        reply.usage.prompt_tokens,
        reply.usage.completion_tokens,
    )
    assert (records[True].input_tokens, records[True].output_tokens) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )
    for record in records.values():
        entry = LedgerEntry.objects.get(request_id=record.request_id)
        expected = (
            record.input_tokens * 4_320_000_000 + record.output_tokens * 15_840_000_000 + 500_000
        ) // 1_000_000
        assert entry.fee_nano == record.fee_nano == expected
        log = PromptLog.objects.get(request_id=record.request_id)
        assert (log.input_tokens, log.output_tokens) == (record.input_tokens, record.output_tokens)
    assert PromptLog.objects.get(request_id=records[True].request_id).response_text == streamed_text
    assert audit_all()[1] == []


def test_a_key_revoked_in_the_console_gets_401_on_the_next_sdk_call(server, funded):
    _account, raw, key = funded
    client = openai.OpenAI(api_key=raw, base_url=server, max_retries=0)
    client.chat.completions.create(
        model="glm-4.7-flash", messages=[{"role": "user", "content": "hi"}]
    )
    api_key_revoke(key=key, actor=None)
    with pytest.raises(openai.AuthenticationError) as error:
        client.chat.completions.create(
            model="glm-4.7-flash", messages=[{"role": "user", "content": "hi"}]
        )
    assert error.value.status_code == 401
    assert error.value.body["code"] == "1004"


def test_a_client_leaving_mid_stream_is_billed_and_releases_its_slot(server, funded):
    account, raw, _key = funded
    import httpx

    with (
        httpx.Client(timeout=30) as http,
        http.stream(
            "POST",
            server + "chat/completions",
            headers={"Authorization": f"Bearer {raw}"},
            json={
                "model": "glm-4.7",
                "stream": True,
                "messages": [{"role": "user", "content": "x"}],
                "simulator": {"output_tokens": 400, "chunk_ms": 20},
            },
        ) as response,
    ):
        for index, _line in enumerate(response.iter_lines()):
            if index > 10:
                break  # hang up with the stream half sent
    deadline = time.monotonic() + 20
    while not UsageRecord.objects.filter(account=account).exists():
        assert time.monotonic() < deadline, "no usage record after the client left"
        time.sleep(0.2)
    record = UsageRecord.objects.get(account=account)
    assert record.code == "client_closed" and 0 < record.output_tokens < 400
    state = shared_state()
    deadline = time.monotonic() + 10
    while state.slot_count(concurrency_key(account.pk)) or state.held(account_hold_key(account.pk)):
        assert time.monotonic() < deadline, "slot or reservation not released"
        time.sleep(0.2)
    assert audit_all()[1] == []


def test_50_concurrent_streams_overrun_the_balance_by_at_most_what_was_in_flight(server, key_for):
    """A balance that covers about 10 streams; 50 start at once on a tier that allows them."""
    from console.models import Account, Tier
    from console.money import NANO_PER_UNIT
    from tests.billing.factories import funded_account

    account = funded_account(recharge_units=0)
    from billing.services import recharge

    # Each stream: ~5 input + 200 output tokens of glm-4.7 ≈ ¥0.0032; fund about 10.
    recharge(account=account, amount_nano=NANO_PER_UNIT * 32 // 1000, reference="ten")
    tier = Tier.objects.create(
        slug="wide",
        name="Wide",
        rank=50,
        retention_days=1,
        requests_per_minute=1000,
        concurrency=100,
    )
    Account.objects.filter(pk=account.pk).update(tier=tier)
    raw, _key = key_for(account)

    async def one(client, index):
        try:
            stream = await client.chat.completions.create(
                model="glm-4.7",
                stream=True,
                max_tokens=200,
                messages=[{"role": "user", "content": f"q{index}"}],
                extra_body={"simulator": {"output_tokens": 200, "chunk_ms": 2}},
            )
            async for _chunk in stream:
                pass
            return "ok"
        except openai.RateLimitError as error:
            return error.body["code"]

    async def run_all():
        client = openai.AsyncOpenAI(api_key=raw, base_url=server, max_retries=0)
        return await asyncio.gather(*(one(client, index) for index in range(50)))

    # In a thread of its own: pytest-playwright keeps an event loop in the main thread.
    with ThreadPoolExecutor(max_workers=1) as pool:
        outcomes = pool.submit(asyncio.run, run_all()).result()
    served = outcomes.count("ok")
    assert served + outcomes.count("1113") == 50
    records = UsageRecord.objects.filter(account=account)
    assert records.count() == 50  # every request recorded, refused ones included
    wallet = Wallet.objects.get(account=account)
    # Each admission reserved its estimate (max_tokens given): the overrun into arrears is at
    # most one stream's estimate beyond the balance.
    one_stream = (5 * 4_320_000_000 + 200 * 15_840_000_000) // 1_000_000 + 1
    assert wallet.arrears_nano <= one_stream * 2
    assert 5 <= served <= 12
    state = shared_state()
    assert state.slot_count(concurrency_key(account.pk)) == 0
    assert state.held(account_hold_key(account.pk)) == 0
    assert audit_all()[1] == []


def test_a_real_http_upstream_route_with_its_model_name_secret_and_timeout(server, funded):
    """Route glm-4.5 to the simulator over HTTP: the pooled client, the upstream model name,
    the encrypted secret, and a timeout that gives 504 and costs nothing."""
    from console.secrets_at_rest import decrypt_secret, encrypt_secret
    from gateway.models import UpstreamRoute

    account, raw, _key = funded
    simulator_url = server.replace("/api/paas/v4/", "/simulator/v1")
    route = UpstreamRoute.objects.get(model="glm-4.5")
    route.base_url = simulator_url
    route.upstream_model = "glm-4.5-upstream"
    route.secret_encrypted = encrypt_secret("sk-upstream-secret")
    route.timeout_seconds = 2
    route.save()
    assert "sk-upstream-secret" not in route.secret_encrypted
    assert decrypt_secret(route.secret_encrypted) == "sk-upstream-secret"
    client = openai.OpenAI(api_key=raw, base_url=server, max_retries=0)
    reply = client.chat.completions.create(
        model="glm-4.5", messages=[{"role": "user", "content": "hi"}]
    )
    assert reply.model == "glm-4.5" and reply.choices[0].message.content
    chunks = list(
        client.chat.completions.create(
            model="glm-4.5", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert any(choice.delta.content for chunk in chunks for choice in chunk.choices)
    # A route whose upstream cannot answer within its timeout (zero here, so it never can).
    UpstreamRoute.objects.filter(pk=route.pk).update(timeout_seconds=0)
    with pytest.raises(openai.APIStatusError) as error:
        client.chat.completions.create(
            model="glm-4.5", messages=[{"role": "user", "content": "slow"}]
        )
    assert error.value.status_code == 504 and error.value.body["code"] == "1231"
    slow = UsageRecord.objects.get(code="1231")
    assert slow.fee_nano == 0
    assert audit_all()[1] == []
