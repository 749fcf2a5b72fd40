"""Resource-pack tokens are held at admission like money (issue 20, item 3).

A request the packs could cover used to reserve nothing and skip the caps, the budget and the
arrears rule, so every concurrent request saw the whole remaining pack: with 150k pack tokens
and 30 requests of max_tokens=100k in flight, all 30 were admitted and what the pack could not
cover was charged as money past a block cap. Each admission now holds the pack tokens of its
estimate (model-specific packs first, then general ones, as settlement draws them); a request
the un-held pack tokens cannot cover goes through the money path with every check."""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from asgiref.sync import sync_to_async

from billing.models import LedgerEntry, ProjectMonthSpend, ResourcePack, Wallet
from billing.services import pack_grant
from console import api_errors as errors
from console.models import Account, Tier
from console.money import NANO_PER_UNIT
from console.shared_state import concurrency_key, pack_hold_keys, reservation_keys
from gateway import services
from gateway.settlement import charge_usage
from projects.services import project_set_cap
from tests.asynchronous import run_async
from tests.billing.factories import funded_account
from tests.conftest import requires_postgres
from tests.gateway.test_chat import post

GLM_47_INPUT_NANO_PER_MILLION = 4_320_000_000
GLM_47_OUTPUT_NANO_PER_MILLION = 15_840_000_000


def _wide_tier(account) -> None:
    """A tier whose rate and concurrency limits let every request of a test through, so what
    refuses them is the money side."""
    tier, _created = Tier.objects.get_or_create(
        slug="wide",
        defaults={
            "name": "Wide",
            "rank": 50,
            "retention_days": 1,
            "requests_per_minute": 1000,
            "concurrency": 100,
        },
    )
    Account.objects.filter(pk=account.pk).update(tier=tier)
    account.refresh_from_db()


def _body(max_tokens: int, model: str = "glm-4.7", content: str = "hi") -> dict:
    return {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
    }


def _admit(auth, body):
    return services.admit(auth=auth, body=body, request_id=services.new_request_id())


# --- Real concurrent requests through the gateway --------------------------------------------


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_on_a_capped_project_share_a_pack_only_as_far_as_it_covers(
    uvicorn_site, key_for
):
    """The issue's scenario through uvicorn with the openai SDK: a pack of 150k tokens, a
    project capped (block) at ¥1, and 30 requests of max_tokens=100k that each really use
    100k output tokens, all in flight at once."""
    account = funded_account(recharge_units=100)
    _wide_tier(account)
    pack, _replayed = pack_grant(account=account, tokens=150_000, reference="pack-150k")
    raw, key = key_for(account)
    project_set_cap(project=key.project, cap_nano=NANO_PER_UNIT, mode="block", actor=None)

    async def one(client, index):
        try:
            await client.chat.completions.create(
                model="glm-4.7",
                max_tokens=100_000,
                messages=[{"role": "user", "content": f"q{index:02}"}],
                # Every answer takes a second, so all 30 are in flight together.
                extra_body={
                    "simulator": {"output_tokens": 100_000, "first_token_ms": 1500, "chunk_ms": 0}
                },
            )
            return "ok"
        except openai.RateLimitError as error:
            return error.body["code"]

    async def run_all():
        client = openai.AsyncOpenAI(
            api_key=raw, base_url=uvicorn_site + "/api/paas/v4/", max_retries=0, timeout=120
        )
        return await asyncio.gather(*(one(client, index) for index in range(30)))

    # In a thread of its own: pytest-playwright keeps an event loop in the main thread.
    with ThreadPoolExecutor(max_workers=1) as pool:
        outcomes = pool.submit(asyncio.run, run_all()).result()

    # One request on the pack (its 100k tokens held, 50k left un-held), one on money admitted
    # at the edge of the cap (as for money alone), every other one refused at the cap.
    assert outcomes.count("ok") == 2, outcomes
    assert outcomes.count(errors.PROJECT_CAP.code) == 28, outcomes
    pack.refresh_from_db()
    assert pack.tokens_remaining == 0
    # Input: ceil(3 / 1.6) + 4 = 6 tokens, estimated as the simulator counts them.
    one_request_nano = (
        6 * GLM_47_INPUT_NANO_PER_MILLION + 100_000 * GLM_47_OUTPUT_NANO_PER_MILLION
    ) // 1_000_000 + 1
    spent = ProjectMonthSpend.objects.get(project=key.project).spent_nano
    # Past the cap by at most what the one edge request can cause.
    assert 0 < spent <= NANO_PER_UNIT + one_request_nano
    assert Wallet.objects.get(account=account).arrears_nano == 0
    assert LedgerEntry.objects.filter(account=account, kind="charge").count() == 2
    state = services.shared_state()
    assert state.slot_count(concurrency_key(account.pk)) == 0
    for hold_key in (
        *reservation_keys(account_id=account.pk, project_id=key.project_id),
        *pack_hold_keys(account_id=account.pk, model="glm-4.7"),
    ):
        assert state.held(hold_key) == 0, hold_key


# --- Admission, in-process ----------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.embedded
def test_a_request_holds_its_estimate_of_pack_tokens_until_it_is_released(
    key_for, fresh_shared_state
):
    account = funded_account()  # no money at all: only the pack can admit anything
    pack_grant(account=account, tokens=250, reference="p")
    raw, _key = key_for(account)
    auth = services.authenticate(f"Bearer {raw}")
    body = _body(max_tokens=100)  # 2 + 4 input tokens: 106 tokens estimated
    first, second = _admit(auth, body), _admit(auth, body)
    assert isinstance(first, services.Admitted) and first.reserved_nano == 0
    assert isinstance(second, services.Admitted) and second.reserved_nano == 0
    model_key, general_key = pack_hold_keys(account_id=account.pk, model="glm-4.7")
    assert fresh_shared_state.held(general_key) == 212
    third = _admit(auth, body)  # 38 un-held tokens: the money path, and there is no money
    assert isinstance(third, services.Refused) and third.refusal == errors.ARREARS
    services.release(first)
    services.release(first)  # twice is harmless
    assert fresh_shared_state.held(general_key) == 106
    again = _admit(auth, body)
    assert isinstance(again, services.Admitted)
    for admitted in (second, again):
        services.release(admitted)
    assert fresh_shared_state.held(general_key) == fresh_shared_state.held(model_key) == 0


@pytest.mark.django_db
@pytest.mark.embedded
def test_model_packs_are_held_before_general_ones_and_only_for_their_model(
    key_for, fresh_shared_state
):
    account = funded_account()
    pack_grant(account=account, tokens=100, model="glm-4.7", reference="for-47")
    pack_grant(account=account, tokens=100, reference="general")
    raw, _key = key_for(account)
    auth = services.authenticate(f"Bearer {raw}")
    state = fresh_shared_state
    glm47, general = pack_hold_keys(account_id=account.pk, model="glm-4.7")
    glm5, _general = pack_hold_keys(account_id=account.pk, model="glm-5")

    # 66 tokens of glm-4.7: all from its own pack, none of the general one.
    first = _admit(auth, _body(max_tokens=60))
    assert isinstance(first, services.Admitted)
    assert (state.held(glm47), state.held(general)) == (66, 0)
    # 66 more: the 34 left of the glm-4.7 pack, then 32 of the general one.
    second = _admit(auth, _body(max_tokens=60))
    assert isinstance(second, services.Admitted)
    assert (state.held(glm47), state.held(general)) == (100, 32)
    # glm-5 cannot use the glm-4.7 pack: 68 general tokens are un-held, 76 wanted.
    refused = _admit(auth, _body(max_tokens=70, model="glm-5"))
    assert isinstance(refused, services.Refused) and refused.refusal == errors.ARREARS
    fits = _admit(auth, _body(max_tokens=60, model="glm-5"))
    assert isinstance(fits, services.Admitted)
    assert (state.held(glm47), state.held(general), state.held(glm5)) == (100, 98, 0)
    for admitted in (first, second, fits):
        services.release(admitted)
    assert state.held(glm47) == state.held(general) == 0


@pytest.mark.django_db
@pytest.mark.embedded
def test_in_arrears_only_the_un_held_pack_tokens_admit_a_paid_request(key_for, fresh_shared_state):
    account = funded_account(recharge_units=1)
    charge_usage(
        account=account, model="glm-4.7", input_tokens=0, output_tokens=1_000_000, request_id="big"
    )
    assert Wallet.objects.get(account=account).arrears_nano > 0
    pack_grant(account=account, tokens=150, reference="p")
    raw, _key = key_for(account)
    auth = services.authenticate(f"Bearer {raw}")
    covered = _admit(auth, _body(max_tokens=100))
    assert isinstance(covered, services.Admitted)
    refused = _admit(auth, _body(max_tokens=100))
    assert isinstance(refused, services.Refused) and refused.refusal == errors.ARREARS
    free = _admit(auth, _body(max_tokens=100, model="glm-4.7-flash"))
    assert isinstance(free, services.Admitted)  # free models hold no pack tokens
    _model_key, general_key = pack_hold_keys(account_id=account.pk, model="glm-4.7")
    assert fresh_shared_state.held(general_key) == 106
    services.release(covered)
    services.release(free)


@pytest.mark.django_db
@pytest.mark.embedded
def test_a_request_the_pack_cannot_cover_goes_through_the_cap(key_for, fresh_shared_state):
    account = funded_account(recharge_units=100)
    pack_grant(account=account, tokens=150, reference="p")
    raw, key = key_for(account)
    project_set_cap(project=key.project, cap_nano=1, mode="block", actor=None)
    auth = services.authenticate(f"Bearer {raw}")
    covered = _admit(auth, _body(max_tokens=100))
    assert isinstance(covered, services.Admitted) and covered.reserved_nano == 0
    edge = _admit(auth, _body(max_tokens=100))  # the money path: admitted at the edge
    assert isinstance(edge, services.Admitted) and edge.reserved_nano > 0
    refused = _admit(auth, _body(max_tokens=100))
    assert isinstance(refused, services.Refused) and refused.refusal == errors.PROJECT_CAP
    for admitted in (covered, edge):
        services.release(admitted)


@pytest.mark.django_db
@pytest.mark.embedded
def test_what_a_killed_worker_held_of_a_pack_comes_back_after_the_ttl(
    key_for, settings, fresh_shared_state
):
    settings.GATEWAY_RESERVATION_TTL = 1
    account = funded_account()
    pack_grant(account=account, tokens=150, reference="p")
    raw, _key = key_for(account)
    auth = services.authenticate(f"Bearer {raw}")
    killed = _admit(auth, _body(max_tokens=100))
    assert isinstance(killed, services.Admitted)
    # Its worker dies: `release` never runs for it, and the pack's rest covers no other.
    assert isinstance(_admit(auth, _body(max_tokens=100)), services.Refused)
    time.sleep(1.3)
    after = _admit(auth, _body(max_tokens=100))
    assert isinstance(after, services.Admitted)
    services.release(after)
    _model_key, general_key = pack_hold_keys(account_id=account.pk, model="glm-4.7")
    assert fresh_shared_state.held(general_key) == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.embedded
@run_async
async def test_a_settled_request_gives_its_pack_tokens_back(key_for, fresh_shared_state):
    account = await sync_to_async(funded_account)()
    await sync_to_async(pack_grant)(account=account, tokens=250, reference="p")
    raw, _key = await sync_to_async(key_for)(account)
    body = {**_body(max_tokens=100), "simulator": {"output_tokens": 100, "first_token_ms": 0}}
    for _request in range(2):  # the second fits again once the first has settled
        response = await post(raw, body)
        assert response.status_code == 200, response.content
    pack = await ResourcePack.objects.aget(account=account)
    assert pack.tokens_remaining == 250 - 2 * 106
    _model_key, general_key = pack_hold_keys(account_id=account.pk, model="glm-4.7")
    assert await sync_to_async(fresh_shared_state.held)(general_key) == 0
