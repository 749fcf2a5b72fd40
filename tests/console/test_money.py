from decimal import Decimal

import pytest

from console.money import (
    MAX_TYPED_UNITS,
    NANO_PER_UNIT,
    AmountError,
    decimal_string,
    format_amount,
    parse_amount,
    round_to_cents,
    to_decimal,
    typed_text,
)

pytestmark = pytest.mark.embedded


@pytest.mark.parametrize(
    ("text", "nano"),
    [
        ("1", 1_000_000_000),
        ("12.5", 12_500_000_000),
        ("12.50", 12_500_000_000),
        ("0.01", 10_000_000),
        (" 7.05 ", 7_050_000_000),
        ("007", 7_000_000_000),
        (str(MAX_TYPED_UNITS), MAX_TYPED_UNITS * NANO_PER_UNIT),
    ],
)
def test_it_parses_typed_amounts_exactly(text, nano):
    assert parse_amount(text) == nano


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1.005", "at most 2 decimal places"),
        ("-3", "must be positive"),
        ("-0.5", "must be positive"),
        ("", "Enter an amount"),
        ("   ", "Enter an amount"),
        ("abc", "Enter a number"),
        ("1e3", "Enter a number"),
        ("1,000", "Enter a number"),
        ("¥5", "Enter a number"),
        ("5.", "Enter a number"),
        (".5", "Enter a number"),
        ("NaN", "Enter a number"),
        ("Infinity", "Enter a number"),
        ("１２", "Enter a number"),  # full-width digits are not silently accepted
        ("0", "more than zero"),
        ("0.00", "more than zero"),
        (str(MAX_TYPED_UNITS + 1), "too large"),
        (f"{MAX_TYPED_UNITS}.01", "too large"),
        ("9" * 40, "too large"),
    ],
)
def test_it_refuses_bad_amounts_with_a_clear_message(text, message):
    with pytest.raises(AmountError) as error:
        parse_amount(text)
    assert message in str(error.value)


def test_it_refuses_none():
    with pytest.raises(AmountError):
        parse_amount(None)


def test_zero_is_accepted_only_when_asked():
    assert parse_amount("0", allow_zero=True) == 0


def test_it_converts_to_decimal_without_losing_a_nano():
    assert to_decimal(1) == Decimal("0.000000001")
    assert to_decimal(123_456_789_012) == Decimal("123.456789012")
    assert decimal_string(5) == "0.000000005"
    assert decimal_string(12 * NANO_PER_UNIT) == "12.000000000"
    assert decimal_string(-1_500_000_000) == "-1.500000000"


@pytest.mark.parametrize(
    ("nano", "currency", "places", "text"),
    [
        (1_234_500_000_000, "CNY", 2, "¥1,234.50"),
        (1_234_500_000_000, "USD", 2, "$1,234.50"),
        (5_000_000, "CNY", 2, "¥0.01"),  # half a cent rounds half up
        (4_999_999, "CNY", 2, "¥0.00"),
        (-50_000_000, "USD", 2, "-$0.05"),
        (-1, "USD", 2, "$0.00"),  # no "-0.00"
        (123_000, "CNY", None, "¥0.000123"),
        (1_000_000_000, "CNY", None, "¥1.00"),
        (1_000_000_000, "EUR", 2, "1.00 EUR"),
        (1_000_000_000, None, 2, "1.00"),
    ],
)
def test_it_formats_for_display(nano, currency, places, text):
    assert format_amount(nano, currency, places=places) == text


def test_round_to_cents_rounds_half_up_and_keeps_integers():
    assert round_to_cents(5_000_000) == 10_000_000
    assert round_to_cents(4_999_999) == 0
    assert round_to_cents(-5_000_000) == -10_000_000
    assert isinstance(round_to_cents(5_000_000), int)


def test_typed_text_round_trips_through_the_parser():
    for text in ["1.00", "12.50", "0.01", "99999.99"]:
        assert typed_text(parse_amount(text)) == text
