"""Payment providers: the interface the payment services call, and the built-in sandbox.

A provider tokenises a card (the number never reaches our database), charges a token and
reports what became of a charge. Nothing here writes the database: `billing.payments`
records payments and settles them from what a provider answers. A real provider (a card
acquirer, Alipay, WeChat Pay) implements the same three methods; its asynchronous
notifications would call `billing.payments.payment_settle` just as the sandbox's delayed
confirmations do.

The **sandbox** behaves by test card number, like card networks' test modes:

| number              | brand      | a charge                                              |
|---------------------|------------|-------------------------------------------------------|
| 4242 4242 4242 4242 | Visa       | succeeds                                              |
| 5555 5555 5555 4444 | Mastercard | succeeds                                              |
| 6200 0000 0000 0005 | UnionPay   | succeeds                                              |
| 4000 0000 0000 0002 | Visa       | is declined (card declined)                           |
| 4000 0000 0000 9995 | Visa       | is declined (insufficient funds)                      |
| 4000 0000 0000 3220 | Visa       | stays pending, then succeeds `SANDBOX_PENDING_SECONDS` later |

Any expiry in the future and any 3- or 4-digit security code. Other numbers are refused:
the sandbox never takes a real card.
"""

import secrets
import time
from dataclasses import dataclass
from datetime import date

from django.conf import settings
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_variables


class CardError(ValueError):
    """A card the provider will not take; the message is shown to the person."""


@dataclass(frozen=True)
class Card:
    token: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True)
class ChargeOutcome:
    status: str  # "succeeded", "declined" or "pending" (Payment.Status values)
    provider_reference: str = ""
    message: str = ""


SUCCEEDED, DECLINED, PENDING = "succeeded", "declined", "pending"


# number → (brand, behaviour)
SANDBOX_CARDS = {
    "4242424242424242": ("Visa", "succeed"),
    "5555555555554444": ("Mastercard", "succeed"),
    "6200000000000005": ("UnionPay", "succeed"),
    "4000000000000002": ("Visa", "decline"),
    "4000000000009995": ("Visa", "insufficient"),
    "4000000000003220": ("Visa", "pending"),
}
DECLINE_MESSAGES = {
    "decline": _("The card was declined."),
    "insufficient": _("The card was declined: insufficient funds."),
}


def luhn_valid(number: str) -> bool:
    total = 0
    for index, digit in enumerate(reversed(number)):
        value = int(digit)
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


class SandboxProvider:
    """Deterministic and stateless: a token carries its card's behaviour, and a pending
    charge's reference carries the time it started, so any process can tell its outcome."""

    name = "sandbox"

    @sensitive_variables("number", "digits", "cvc")
    def tokenize(
        self, *, number: str, exp_month: int, exp_year: int, cvc: str, today: date
    ) -> Card:
        digits = "".join(number.split())
        if not digits.isascii() or not digits.isdigit() or not 12 <= len(digits) <= 19:
            raise CardError(_("Enter the card number: 12 to 19 digits."))
        if not luhn_valid(digits):
            raise CardError(_("This card number is not valid. Check the digits."))
        if digits not in SANDBOX_CARDS:
            raise CardError(_("The sandbox takes test cards only, such as 4242 4242 4242 4242."))
        if not 1 <= exp_month <= 12:
            raise CardError(_("The expiry month must be between 1 and 12."))
        if (exp_year, exp_month) < (today.year, today.month) or exp_year > today.year + 20:
            raise CardError(_("This card has expired or its expiry year is not valid."))
        if not (cvc.isascii() and cvc.isdigit() and len(cvc) in (3, 4)):
            raise CardError(_("The security code has 3 or 4 digits."))
        brand, behaviour = SANDBOX_CARDS[digits]
        return Card(
            token=f"tok_sbx_{behaviour}_{secrets.token_hex(12)}",
            brand=brand,
            last4=digits[-4:],
            exp_month=exp_month,
            exp_year=exp_year,
        )

    @staticmethod
    def _behaviour(token: str) -> str:
        parts = token.split("_")
        return parts[2] if len(parts) == 4 and parts[:2] == ["tok", "sbx"] else "decline"

    def charge(self, *, token: str, amount_nano: int, currency: str, reference: str):
        behaviour = self._behaviour(token)
        # What the charge became, and when it started, ride in its reference: `retrieve`
        # answers for any charge, in any process, with no memory of its own.
        started_ms = int(time.time() * 1000)
        provider_reference = f"ch_sbx_{behaviour}_{started_ms}_{secrets.token_hex(8)}"
        if behaviour == "pending":
            return ChargeOutcome(PENDING, provider_reference)  # the issuer decides later
        return self.retrieve(provider_reference=provider_reference)

    def retrieve(self, *, provider_reference: str) -> ChargeOutcome:
        """What became of a charge. Pending ones succeed once SANDBOX_PENDING_SECONDS passed."""
        parts = provider_reference.split("_")
        if len(parts) != 5 or parts[:2] != ["ch", "sbx"] or not parts[3].isdigit():
            return ChargeOutcome(DECLINED, provider_reference, str(_("Unknown charge.")))
        behaviour, started_ms = parts[2], int(parts[3])
        if behaviour == "succeed":
            return ChargeOutcome(SUCCEEDED, provider_reference)
        if behaviour == "pending":
            elapsed_ms = int(time.time() * 1000) - started_ms
            if elapsed_ms < settings.SANDBOX_PENDING_SECONDS * 1000:
                return ChargeOutcome(PENDING, provider_reference)
            return ChargeOutcome(SUCCEEDED, provider_reference)
        message = DECLINE_MESSAGES.get(behaviour, DECLINE_MESSAGES["decline"])
        return ChargeOutcome(DECLINED, provider_reference, str(message))


class NoCardProvider:
    """CARD_PROVIDER=none: a deployment without a card acquirer takes no cards."""

    name = "none"

    def tokenize(self, **card) -> Card:
        raise CardError(_("Card payments are not available on this console."))

    def charge(self, **charge) -> ChargeOutcome:
        raise CardError(_("Card payments are not available on this console."))

    def retrieve(self, *, provider_reference: str) -> ChargeOutcome:
        return ChargeOutcome(DECLINED, provider_reference, str(_("Unknown charge.")))


_PROVIDERS = {"sandbox": SandboxProvider(), "none": NoCardProvider()}
PROVIDER_NAMES = tuple(_PROVIDERS)


def card_provider():
    """The provider that takes cards (settings.CARD_PROVIDER; the sandbox by default)."""
    return _PROVIDERS[settings.CARD_PROVIDER]


def provider_named(name: str):
    return _PROVIDERS[name]
