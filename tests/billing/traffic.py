"""Usage through the gateway's own settlement and refusal paths (charge, usage record,
roll-ups, prompt log), backdated where a test needs days: the way seed_demo makes history."""

import random
from datetime import datetime, timedelta

from django.utils import timezone

from console import api_errors as errors
from gateway.services import Admitted, Outcome, Refused, record_refusal
from gateway.settlement import settle
from keys.selectors import Authenticated

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
