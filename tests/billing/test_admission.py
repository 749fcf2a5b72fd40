import pytest

from billing.selectors import Admission, estimate_request, may_admit
from billing.services import pack_grant
from console.money import NANO_PER_UNIT
from gateway.settlement import charge_usage
from tests.billing.factories import funded_account

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]

MESSAGES = [{"role": "user", "content": "你好，智谱！" * 8}]  # 48 characters


def test_the_estimate_uses_the_prompt_size_and_max_tokens():
    account = funded_account()
    estimate = estimate_request(account=account, model="glm-4.7", messages=MESSAGES, max_tokens=100)
    assert estimate.input_tokens == 30 + 4  # ceil(48 / 1.6) + per-message overhead
    assert estimate.output_tokens == 100
    # 34 × ¥4.32/M + 100 × ¥15.84/M = 146,880 + 1,584,000 nano
    assert estimate.cost_nano == 1_730_880
    default = estimate_request(account=account, model="glm-4.7", messages=MESSAGES, max_tokens=None)
    assert default.output_tokens == 1_024
    assert estimate_request(account=account, model="nope", messages=MESSAGES, max_tokens=1) is None


def test_multimodal_parts_count_their_text_and_a_fixed_allowance_per_image():
    account = funded_account()
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 9_000}}
    messages = [{"role": "user", "content": [{"type": "text", "text": "x" * 16}, image]}]
    assert (
        estimate_request(
            account=account, model="glm-4.7", messages=messages, max_tokens=1
        ).input_tokens
        == 10 + 4 + 2_048  # the image's data is not text: its length is not what it costs
    )


def test_a_funded_account_is_admitted_until_reservations_use_its_balance():
    account = funded_account(recharge_units=1)
    estimate = estimate_request(account=account, model="glm-4.7", messages=MESSAGES, max_tokens=10)
    assert may_admit(account=account, estimate=estimate) == Admission(True, "balance")
    assert may_admit(account=account, estimate=estimate, reserved_nano=NANO_PER_UNIT) == Admission(
        False, "no_balance"
    )


def test_in_arrears_only_free_or_pack_covered_requests_pass():
    account = funded_account(recharge_units=1)
    charge_usage(
        account=account, model="glm-4.7", input_tokens=0, output_tokens=1_000_000, request_id="big"
    )
    paid = estimate_request(account=account, model="glm-4.7", messages=MESSAGES, max_tokens=10)
    assert may_admit(account=account, estimate=paid) == Admission(False, "arrears")
    free = estimate_request(
        account=account, model="glm-4.7-flash", messages=MESSAGES, max_tokens=10
    )
    assert may_admit(account=account, estimate=free) == Admission(True, "free")
    pack_grant(account=account, tokens=paid.input_tokens + paid.output_tokens, reference="p")
    assert may_admit(account=account, estimate=paid) == Admission(True, "packs", pack_covered=True)
    other = estimate_request(account=account, model="glm-5", messages=MESSAGES, max_tokens=10)
    pack_grant(account=account, tokens=10**6, model="glm-4.7", reference="only-47")
    assert may_admit(account=account, estimate=other).allowed is True  # the general pack
