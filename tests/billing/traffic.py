"""Usage through the gateway's own settlement and refusal paths (charge, usage record,
roll-ups, prompt log), backdated where a test needs days: the way seed_demo makes history."""

import random
from datetime import datetime, timedelta

from django.utils import timezone

from console import api_errors as errors
from gateway.services import Admitted, Outcome, Refused, record_refusal
from gateway.settlement import settle
from keys.selectors import Authenticated
from usage.rollups import usage_record_write

MODELS = ["glm-4.7", "glm-4.5-air", "glm-4.7-flash"]


def settle_one(
    key,
    *,
    model="glm-4.7",
    input_tokens=1_000,
    output_tokens=500,
    status=200,
    code="",
    at: datetime | None = None,
    request_id=None,
    project=None,
):
    """One forwarded request (status 200, or an upstream failure such as 502/1230)."""
    auth = Authenticated(key=key, project=project or key.project, account=key.account)
    request_id = request_id or f"t-{random.getrandbits(64):x}"
    admitted = Admitted(
        auth=auth, route=None, estimate=None, request_id=request_id, reserved_nano=0
    )
    return settle(
        admitted=admitted,
        body={"model": model, "messages": [{"role": "user", "content": "你好，世界"}]},
        outcome=Outcome(
            status=status,
            code=code,
            input_tokens=input_tokens if status == 200 else 0,
            output_tokens=output_tokens if status == 200 else 0,
            response_text="ok",
        ),
        client_request_id="",
        stream=False,
        at=at,
    )


def refuse_one(key, *, refusal=errors.FREQUENCY, model="glm-4.7"):
    """One request refused at admission (now: refusals are not backdated)."""
    auth = Authenticated(key=key, project=key.project, account=key.account)
    record_refusal(
        refused=Refused(refusal, auth),
        request_id=f"r-{random.getrandbits(64):x}",
        body={"model": model},
        client_request_id="",
        stream=False,
    )


def mixed_traffic(keys, *, days=10, seed=7, now=None):
    """Successes over `days` days (several models, keys and hours), a few upstream failures,
    and refusals; returns how many requests were made."""
    randomness = random.Random(seed)
    now = now or timezone.now()
    made = 0
    for day in range(days, -1, -1):
        for _ in range(randomness.randint(1, 4)):
            key = randomness.choice(keys)
            at = now - timedelta(days=day, minutes=randomness.randint(0, 23 * 60))
            if randomness.random() < 0.15:
                settle_one(key, status=502, code="1230", at=at)
            else:
                settle_one(
                    key,
                    model=randomness.choice(MODELS),
                    input_tokens=randomness.randint(10, 50_000),
                    output_tokens=randomness.randint(1, 20_000),
                    at=at,
                )
            made += 1
    for key in keys:
        refuse_one(key)
        made += 1
    return made


def endpoint_one(key, *, endpoint, model="glm-4.7", requested_model="", at=None, status=200):
    """One request on another endpoint than the OpenAI-compatible one (the coding plan's or
    the Anthropic-compatible), written as a plan-paid request is: through
    `usage_record_write`, at no fee. Until the gateway sets the endpoint in settlement this
    is the only way such a record is made in tests."""
    return usage_record_write(
        account=key.account,
        project=key.project,
        api_key=key,
        request_id=f"e-{random.getrandbits(64):x}",
        model=model,
        requested_model=requested_model,
        endpoint=endpoint,
        status=status,
        code="" if status == 200 else "1302",
        input_tokens=700 if status == 200 else 0,
        output_tokens=300 if status == 200 else 0,
        created_at=at or timezone.now(),
    )


def endpoint_traffic(keys, *, days=10, seed=11, now=None):
    """Coding-plan and Anthropic-compatible requests on the same keys, models and hours as
    `mixed_traffic`'s (so a roll-up without the endpoint would merge them), some of them
    aliases (claude-sonnet-4-5 served as glm-4.7); returns how many were made."""
    randomness = random.Random(seed)
    now = now or timezone.now()
    made = 0
    for day in range(days, -1, -1):
        for endpoint in ("coding", "anthropic"):
            key = randomness.choice(keys)
            at = now - timedelta(days=day, minutes=randomness.randint(0, 23 * 60))
            alias = endpoint == "anthropic" and randomness.random() < 0.7
            endpoint_one(
                key,
                endpoint=endpoint,
                model="glm-4.7",
                requested_model="claude-sonnet-4-5" if alias else "",
                at=at,
                status=200 if randomness.random() < 0.9 else 429,
            )
            made += 1
    return made
