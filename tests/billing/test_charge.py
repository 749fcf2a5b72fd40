"""charge_usage: packs first, then the fee split proportionally, arrears when short."""

from datetime import timedelta

import pytest
from django.utils import timezone

from billing.charges import price_tokens
from billing.models import LedgerEntry, ModelPrice, PackConsumption, ResourcePack, Wallet
from billing.selectors import account_month_spend, project_month_spend
from billing.services import UnknownModel, bonus_grant, pack_grant, recharge
from console.money import NANO_PER_UNIT
from console.services import ServiceError
from gateway.settlement import charge_usage
from tests.billing.factories import funded_account

pytestmark = [pytest.mark.django_db, pytest.mark.embedded]


def wallet(account):
    row = Wallet.objects.get(account=account)
    return row.recharge_nano, row.bonus_nano, row.arrears_nano


def test_a_pack_covers_input_first_then_output_and_the_rest_is_priced():
    """The issue's example: a 1,000-token pack and 800 input + 700 output tokens."""
    account = funded_account(recharge_units=100)
    pack, _ = pack_grant(account=account, tokens=1_000, reference="p1")
    result = charge_usage(
        account=account, model="glm-4.7", input_tokens=800, output_tokens=700, request_id="r1"
    )
    assert [(use.input_tokens, use.output_tokens) for use in result.packs] == [(800, 200)]
    assert (result.priced_input_tokens, result.priced_output_tokens) == (0, 500)
    # 500 output tokens at ¥15.84 per 1M = ¥0.00792
    assert result.fee_nano == 7_920_000
    pack.refresh_from_db()
    assert pack.tokens_remaining == 0
    assert wallet(account) == (100 * NANO_PER_UNIT - 7_920_000, 0, 0)


@pytest.mark.parametrize(
    ("recharge_units", "bonus_units", "parts"),
    [(50, 50, (5, 5)), (90, 10, (9, 1))],
)
def test_the_fee_is_split_in_proportion_to_the_balances(recharge_units, bonus_units, parts):
    """The issue's examples, in whole units: a fee of 10 at 50/50 and at 90/10."""
    account = funded_account(recharge_units=recharge_units, bonus_units=bonus_units)
    ModelPrice.objects.create(
        model="ten-per-token",
        currency="CNY",
        input_per_million_nano=10 * NANO_PER_UNIT * 1_000_000,
        output_per_million_nano=0,
        effective_from=timezone.now() - timedelta(days=1),
    )
    result = charge_usage(
        account=account, model="ten-per-token", input_tokens=1, output_tokens=0, request_id="r"
    )
    assert result.fee_nano == 10 * NANO_PER_UNIT
    assert (result.recharge_nano, result.bonus_nano) == (
        parts[0] * NANO_PER_UNIT,
        parts[1] * NANO_PER_UNIT,
    )


def test_model_specific_packs_go_before_general_ones_then_earliest_expiry():
    account = funded_account(recharge_units=10)
    general_soon, _ = pack_grant(account=account, tokens=100, days=1, reference="g")
    specific_late, _ = pack_grant(
        account=account, tokens=100, days=30, model="glm-4.7", reference="s-late"
    )
    specific_soon, _ = pack_grant(
        account=account, tokens=100, days=5, model="glm-4.7", reference="s-soon"
    )
    other_model, _ = pack_grant(
        account=account, tokens=100, days=1, model="glm-5", reference="other"
    )
    result = charge_usage(
        account=account, model="glm-4.7", input_tokens=250, output_tokens=100, request_id="r"
    )
    assert [(use.pack_id, use.input_tokens, use.output_tokens) for use in result.packs] == [
        (specific_soon.pk, 100, 0),
        (specific_late.pk, 100, 0),
        (general_soon.pk, 50, 50),
    ]
    assert (result.priced_input_tokens, result.priced_output_tokens) == (0, 50)
    other_model.refresh_from_db()
    assert other_model.tokens_remaining == 100
    assert PackConsumption.objects.count() == 3


def test_expired_and_closed_packs_are_not_used():
    account = funded_account(recharge_units=10)
    pack, _ = pack_grant(account=account, tokens=1_000, reference="old")
    ResourcePack.objects.filter(pk=pack.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    result = charge_usage(
        account=account, model="glm-4.7", input_tokens=100, output_tokens=0, request_id="r"
    )
    assert result.packs == [] and result.priced_input_tokens == 100


def test_the_fee_rounds_half_up_to_a_nano():
    price = ModelPrice(input_per_million_nano=1, output_per_million_nano=3)
    assert price_tokens(input_tokens=500_000, output_tokens=0, price=price) == 1  # 0.5 → 1
    assert price_tokens(input_tokens=499_999, output_tokens=0, price=price) == 0
    assert price_tokens(input_tokens=0, output_tokens=500_000, price=price) == 2  # 1.5 → 2


def test_a_short_balance_takes_what_is_there_and_records_arrears():
    account = funded_account(recharge_units=1)
    bonus_grant(account=account, amount_nano=NANO_PER_UNIT, reference="b")
    # 1M output tokens of glm-4.7 = ¥15.84
    result = charge_usage(
        account=account, model="glm-4.7", input_tokens=0, output_tokens=1_000_000, request_id="r"
    )
    assert result.fee_nano == 15_840_000_000
    assert (result.recharge_nano, result.bonus_nano) == (NANO_PER_UNIT, NANO_PER_UNIT)
    assert result.arrears_nano == 13_840_000_000
    assert wallet(account) == (0, 0, 13_840_000_000)
    # A recharge repays the arrears first.
    recharge(account=account, amount_nano=20 * NANO_PER_UNIT, reference="pay")
    assert wallet(account) == (20 * NANO_PER_UNIT - 13_840_000_000, 0, 0)


def test_a_free_model_costs_nothing_and_consumes_no_pack():
    account = funded_account()
    pack, _ = pack_grant(account=account, tokens=1_000, reference="p")
    result = charge_usage(
        account=account, model="glm-4.7-flash", input_tokens=500, output_tokens=500, request_id="r"
    )
    assert (result.fee_nano, result.packs, result.arrears_nano) == (0, [], 0)
    pack.refresh_from_db()
    assert pack.tokens_remaining == 1_000
    assert not LedgerEntry.objects.filter(kind=LedgerEntry.Kind.CHARGE).exists()


def test_replaying_a_request_id_changes_nothing_and_returns_the_original_breakdown():
    account = funded_account(recharge_units=10)
    first = charge_usage(
        account=account, model="glm-4.7", input_tokens=1_000, output_tokens=1_000, request_id="x"
    )
    before = wallet(account)
    again = charge_usage(
        account=account, model="glm-4.7", input_tokens=1_000, output_tokens=1_000, request_id="x"
    )
    assert wallet(account) == before
    assert again.replayed and not first.replayed
    assert (again.fee_nano, again.recharge_nano, again.bonus_nano) == (
        first.fee_nano,
        first.recharge_nano,
        first.bonus_nano,
    )
    assert LedgerEntry.objects.filter(request_id="x").count() == 1


def test_month_to_date_counters_follow_the_charges():
    account = funded_account(recharge_units=100)
    project = account.projects.get()
    for index in range(3):
        charge_usage(
            account=account,
            model="glm-4.7",
            input_tokens=1_000_000,
            output_tokens=0,
            request_id=f"r{index}",
            project=project,
        )
    assert account_month_spend(account=account) == 3 * 4_320_000_000
    assert project_month_spend(account=account) == {project.pk: 3 * 4_320_000_000}


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"model": "gpt-17"}, UnknownModel),
        ({"input_tokens": -1}, ServiceError),
        ({"request_id": ""}, ServiceError),
        ({"request_id": "x" * 65}, ServiceError),
    ],
)
def test_bad_input_is_refused_and_the_ledger_untouched(kwargs, error):
    account = funded_account(recharge_units=10)
    entries = LedgerEntry.objects.count()
    call = {
        "account": account,
        "model": "glm-4.7",
        "input_tokens": 10,
        "output_tokens": 10,
        "request_id": "r",
        **kwargs,
    }
    with pytest.raises(error):
        charge_usage(**call)
    assert LedgerEntry.objects.count() == entries
