from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.charges import split_fee

pytestmark = pytest.mark.embedded

balances = st.integers(min_value=0, max_value=10**15)


@pytest.mark.parametrize(
    ("fee", "recharge", "bonus", "parts"),
    [
        (10, 50, 50, (5, 5)),
        (10, 90, 10, (9, 1)),
        (10, 100, 0, (10, 0)),
        (10, 0, 100, (0, 10)),
        (1, 1, 1, (1, 0)),  # the odd unit goes to the recharge part (bonus is floored)
        (0, 5, 5, (0, 0)),
        (10, 5, 5, (5, 5)),  # exactly everything
    ],
)
def test_documented_examples(fee, recharge, bonus, parts):
    assert split_fee(fee, recharge, bonus) == parts


@given(recharge=balances, bonus=balances, data=st.data())
def test_parts_are_non_negative_sum_to_the_fee_and_stay_within_one_unit_of_the_exact_share(
    recharge, bonus, data
):
    if recharge + bonus == 0:
        return
    fee = data.draw(st.integers(min_value=0, max_value=recharge + bonus))
    recharge_part, bonus_part = split_fee(fee, recharge, bonus)
    assert recharge_part >= 0 and bonus_part >= 0
    assert recharge_part + bonus_part == fee
    assert recharge_part <= recharge and bonus_part <= bonus
    exact_bonus = Fraction(fee * bonus, recharge + bonus)
    assert abs(bonus_part - exact_bonus) < 1
    assert abs(recharge_part - (fee - exact_bonus)) < 1


@pytest.mark.parametrize(
    ("fee", "recharge", "bonus"), [(11, 5, 5), (-1, 5, 5), (1, -1, 5), (1, 0, 0)]
)
def test_impossible_splits_are_refused(fee, recharge, bonus):
    with pytest.raises(ValueError, match="split_fee needs"):
        split_fee(fee, recharge, bonus)
