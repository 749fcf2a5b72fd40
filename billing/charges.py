"""The money rules of one request's charge, as pure functions: which packs cover its tokens,
what the rest costs, how that fee splits between the balances, what is left as arrears, and
when a drop of the balance crosses a threshold.

No database here: `billing.charging` reads what these take (the price, the locked wallet
and packs) and writes what they return; the gateway's settlement composes the two.
"""

from dataclasses import dataclass, field

from billing.models import ModelPrice

MILLION = 1_000_000


@dataclass(frozen=True)
class PackUse:
    """The tokens one request takes from one pack."""

    pack_id: int
    input_tokens: int
    output_tokens: int

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class Charge:
    """What one request costs and where it is taken from: pack tokens first, then the fee
    (on the tokens no pack covered) split between the recharge and bonus balances, and the
    part they cannot cover as arrears. `replayed`: the request was charged before, and this
    is that charge as the ledger recorded it."""

    request_id: str
    model: str
    input_tokens: int
    output_tokens: int
    packs: list[PackUse] = field(default_factory=list)
    priced_input_tokens: int = 0
    priced_output_tokens: int = 0
    input_price_nano: int = 0  # per 1M tokens, as charged
    output_price_nano: int = 0
    fee_nano: int = 0
    recharge_nano: int = 0
    bonus_nano: int = 0
    arrears_nano: int = 0
    replayed: bool = False

    @property
    def pack_tokens(self) -> int:
        return sum(use.tokens for use in self.packs)

    @property
    def spent_nano(self) -> int:
        """What the balances paid (the fee less arrears)."""
        return self.recharge_nano + self.bonus_nano

    @property
    def changes_nothing(self) -> bool:
        """No pack token and no money: a free request, which gets no ledger entry."""
        return not self.packs and not self.fee_nano


def split_fee(fee: int, recharge: int, bonus: int) -> tuple[int, int]:
    """Split a fee the balances can cover between them in proportion to their sizes.

    bonus part = floor(fee × bonus / (recharge + bonus)), recharge part = the rest
    (fee 10 at 50/50 → 5 and 5; at 90/10 → 9 and 1). Needs fee ≤ recharge + bonus.
    """
    total = recharge + bonus
    if fee < 0 or recharge < 0 or bonus < 0 or fee > total:
        raise ValueError("split_fee needs 0 <= fee <= recharge + bonus")
    if fee == 0:
        return 0, 0
    bonus_part = fee * bonus // total
    # = ceil(fee × recharge / total) ≤ recharge, since fee ≤ total: never more than is there.
    recharge_part = fee - bonus_part
    return recharge_part, bonus_part


def price_tokens(*, input_tokens: int, output_tokens: int, price: ModelPrice) -> int:
    """fee = round-half-up((input × input price + output × output price) / 10^6) nano."""
    numerator = (
        input_tokens * price.input_per_million_nano + output_tokens * price.output_per_million_nano
    )
    return (numerator + MILLION // 2) // MILLION


def packs_draw(
    packs: list[tuple[int, int]], *, input_tokens: int, output_tokens: int
) -> tuple[list[PackUse], int, int]:
    """Take the tokens from `packs` ((id, tokens remaining), in the order they are used),
    input tokens first. Returns (what each pack gives, input and output tokens left)."""
    uses: list[PackUse] = []
    left_in, left_out = input_tokens, output_tokens
    for pack_id, remaining in packs:
        take_in = min(left_in, remaining)
        take_out = min(left_out, remaining - take_in)
        if not take_in and not take_out:
            continue
        uses.append(PackUse(pack_id, take_in, take_out))
        left_in -= take_in
        left_out -= take_out
        if not left_in and not left_out:
            break
    return uses, left_in, left_out


def charge_compute(
    *,
    request_id: str,
    model: str,
    input_tokens: int,
    output_tokens: int,
    price: ModelPrice,
    packs: list[tuple[int, int]],
    recharge_nano: int,
    bonus_nano: int,
) -> Charge:
    """One request's charge against the balances and packs it found locked: packs first
    (free models take none), then the fee split proportionally, arrears when short."""
    uses, left_in, left_out = ([], input_tokens, output_tokens)
    if not price.is_free:
        uses, left_in, left_out = packs_draw(
            packs, input_tokens=input_tokens, output_tokens=output_tokens
        )
    fee = (
        0
        if price.is_free
        else price_tokens(input_tokens=left_in, output_tokens=left_out, price=price)
    )
    available = recharge_nano + bonus_nano
    if fee <= available:
        recharge_part, bonus_part = split_fee(fee, recharge_nano, bonus_nano)
        arrears = 0
    else:
        recharge_part, bonus_part = recharge_nano, bonus_nano
        arrears = fee - available
    return Charge(
        request_id=request_id,
        model=model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        packs=uses,
        priced_input_tokens=left_in,
        priced_output_tokens=left_out,
        input_price_nano=price.input_per_million_nano,
        output_price_nano=price.output_per_million_nano,
        fee_nano=fee,
        recharge_nano=recharge_part,
        bonus_nano=bonus_part,
        arrears_nano=arrears,
    )


def balance_crossed(*, before: int, spent: int, threshold: int | None) -> bool:
    """Whether spending `spent` from a balance of `before` took it below `threshold`."""
    return threshold is not None and spent > 0 and before >= threshold > before - spent
