"""Refusals count against the account's rate window: a key holder sending invalid bodies or
unknown models cannot make the database write more than the same number of admitted
requests would."""

import pytest

from console.models import Account, Tier
from tests.asynchronous import run_async
from tests.gateway.test_chat import BODY, error_of, post
from usage.models import UsageRecord

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.embedded]


@run_async
async def test_a_storm_of_invalid_bodies_is_rate_limited_and_writes_no_more_than_the_limit(funded):
    account, raw, _key = funded
    tier = await Tier.objects.acreate(
        slug="tiny", name="Tiny", rank=99, retention_days=1, requests_per_minute=3, concurrency=5
    )
    await Account.objects.filter(pk=account.pk).aupdate(tier=tier)
    bodies = ["{not json", {**BODY, "model": "gpt-17"}, {**BODY, "max_tokens": -5}] * 10
    answers = [await post(raw, body) for body in bodies]
    codes = [(response.status_code, error_of(response)) for response in answers]
    assert codes[:3] == [(400, "1210"), (400, "1211"), (400, "1210")]
    assert set(codes[3:]) == {(429, "1303")}
    assert answers[0]["x-ratelimit-remaining-requests"] == "2"
    # Three refusals within the limit, and the first 1303 of the minute: not one per request.
    records = [
        (record.status, record.code)
        async for record in UsageRecord.objects.filter(account=account).order_by("created_at")
    ]
    assert records == [(400, "1210"), (400, "1211"), (400, "1210"), (429, "1303")]
    # The window is the account's: a valid request is refused too until it resets.
    assert error_of(await post(raw)) == "1303"
