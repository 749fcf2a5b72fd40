from billing.services import bonus_grant, recharge
from console.models import Account
from console.money import NANO_PER_UNIT
from tests.factories import make_account, make_user


def funded_account(*, recharge_units: int = 0, bonus_units: int = 0, **fields) -> Account:
    """An account without the starter pack, with the given balances."""
    account = make_account(make_user(), starter_pack=False, **fields)
    if recharge_units:
        recharge(
            account=account,
            amount_nano=recharge_units * NANO_PER_UNIT,
            reference=f"fund-{account.pk}",
        )
    if bonus_units:
        bonus_grant(
            account=account, amount_nano=bonus_units * NANO_PER_UNIT, reference=f"gift-{account.pk}"
        )
    return account
