"""Money: integers of 10^-9 of the account's currency ("nano"), and the only code that turns
them into text or text into them.

Amounts people type have at most 2 decimals; amounts the system computes (a fee for a few
tokens) can carry all 9. No float is ever involved.
"""

import re
from decimal import ROUND_HALF_UP, Decimal

from django.utils.translation import gettext_lazy as _

NANO_PER_UNIT = 10**9
NANO_PER_CENT = 10**7
# The largest amount a person may type (100 million units): far above any recharge, far
# below the 9.2 × 10^18 a 64-bit column holds in nano.
MAX_TYPED_UNITS = 100_000_000

CURRENCY_SYMBOLS = {"CNY": "¥", "USD": "$"}

# ASCII digits only: `\d` would also take full-width and other scripts' digits.
_TYPED_AMOUNT = re.compile(r"(?P<units>[0-9]+)(?:\.(?P<cents>[0-9]{1,2}))?")


class AmountError(ValueError):
    """A typed amount that cannot be accepted; the message is shown to the person."""


def parse_amount(text: str, *, allow_zero: bool = False) -> int:
    """Parse a typed amount such as `12`, `12.5` or `12.50` into nano.

    Refuses negatives, more than 2 decimals, exponents, separators, and anything above
    MAX_TYPED_UNITS, each with a message that says what to type instead.
    """
    if text is None:
        raise AmountError(_("Enter an amount."))
    cleaned = str(text).strip()
    if not cleaned:
        raise AmountError(_("Enter an amount."))
    if cleaned.startswith("-"):
        raise AmountError(_("The amount must be positive."))
    match = _TYPED_AMOUNT.fullmatch(cleaned)
    if match is None:
        if re.fullmatch(r"[0-9]+\.[0-9]{3,}", cleaned):
            raise AmountError(_("Use at most 2 decimal places, like 12.50."))
        raise AmountError(_("Enter a number like 100 or 12.50, without currency signs."))
    units = int(match["units"])
    cents = int((match["cents"] or "0").ljust(2, "0"))
    if units > MAX_TYPED_UNITS or (units == MAX_TYPED_UNITS and cents):
        raise AmountError(_("The amount is too large."))
    nano = units * NANO_PER_UNIT + cents * NANO_PER_CENT
    if nano == 0 and not allow_zero:
        raise AmountError(_("The amount must be more than zero."))
    return nano


def to_decimal(nano: int) -> Decimal:
    """The exact amount in currency units."""
    return Decimal(int(nano)).scaleb(-9)


def decimal_string(nano: int) -> str:
    """Nine decimals, as machine-readable outputs (`show_balance --json`, CSV) print it."""
    return f"{to_decimal(nano):.9f}"


def round_to_cents(nano: int) -> int:
    """Round half up (away from zero for negatives) to a whole cent, in nano."""
    quantized = to_decimal(nano).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return int(quantized.scaleb(9))


def format_amount(nano: int, currency: str | None = None, *, places: int | None = 2) -> str:
    """Display text: `¥1,234.50`, `-$0.05`, or with `places=None` every significant decimal
    (at least 2), for small per-request fees such as `¥0.000123`.

    Display rounds half up; stored values are never rounded by this.
    """
    value = to_decimal(nano)
    if places is None:
        text = f"{abs(value):,.9f}".rstrip("0")
        whole, _dot, decimals = text.partition(".")
        text = f"{whole}.{decimals.ljust(2, '0')}"
    else:
        quantum = Decimal(1).scaleb(-places)
        text = f"{abs(value).quantize(quantum, rounding=ROUND_HALF_UP):,.{places}f}"
    sign = "-" if value < 0 and text.strip("0.,") else ""
    symbol = CURRENCY_SYMBOLS.get(currency or "", "")
    suffix = "" if symbol or not currency else f" {currency}"
    return f"{sign}{symbol}{text}{suffix}"


def typed_text(nano: int) -> str:
    """The text a form shows back for a typed amount (no symbol, no separators)."""
    return f"{to_decimal(nano):.2f}"
