"""Recharges through payment providers: saved cards, card and bank-transfer payments, staff
top-ups, promotions and auto-recharge.

A payment is recorded `pending` before the provider is asked (so a crash between the two
leaves a row the sweep can settle), the provider is called with no transaction open, and
`payment_settle` moves the row out of `pending` under a row lock in the same transaction as
the ledger entry. Whoever settles first wins; everyone after finds it settled and changes
nothing — whether the second confirmation is a retried task, the sweep, or a replay.

Lock order, in every path: saved cards → payment → billing profile → wallet → packs.
"""

import logging
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_variables

# tasks.py imports this module back: both import modules, not names, so either loads first.
from billing import tasks
from billing.models import BillingProfile, Payment, PaymentMethod, Promotion, Wallet
from billing.providers import (
    DECLINED,
    PENDING,
    SUCCEEDED,
    CardError,
    ChargeOutcome,
    card_provider,
    provider_named,
)
from billing.selectors import current_month, month_bounds
from billing.services import mark_money_moved, recharge
from billing.signals import purchase_paid
from console.emails import email_queue
from console.models import Account, AuditEvent, Membership, User
from console.money import format_amount
from console.roles import role_can
from console.services import ServiceError, audit_record, lock_in_order

logger = logging.getLogger(__name__)

# A bank transfer's reference is typed into the transfer's memo: short, upper case, no
# characters that read alike (0/O, 1/I/L).
_TRANSFER_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


# --- Amounts and promotions -----------------------------------------------------------------


def recharge_minimum_nano(currency: str) -> int:
    return settings.RECHARGE_MINIMUM_UNITS[currency] * 10**9


def check_recharge_amount(*, account: Account, amount_nano: int) -> None:
    minimum = recharge_minimum_nano(account.currency)
    maximum = settings.RECHARGE_MAXIMUM_UNITS * 10**9
    if amount_nano < minimum:
        raise ServiceError(
            _("The smallest recharge is %(amount)s.")
            % {"amount": format_amount(minimum, account.currency)}
        )
    if amount_nano > maximum:
        raise ServiceError(
            _("The largest recharge is %(amount)s; for more, use several payments.")
            % {"amount": format_amount(maximum, account.currency)}
        )


def promotions_active(*, currency: str, at: datetime | None = None) -> list[Promotion]:
    at = at or timezone.now()
    return list(
        Promotion.objects.filter(currency=currency, active=True)
        .filter(Q(starts_at__isnull=True) | Q(starts_at__lte=at))
        .filter(Q(ends_at__isnull=True) | Q(ends_at__gt=at))
        .order_by("min_amount_nano", "pk")
    )


def promotion_for(*, currency: str, amount_nano: int, at: datetime | None = None):
    """The promotion a recharge of `amount_nano` earns: the highest threshold it reaches."""
    eligible = [
        promotion
        for promotion in promotions_active(currency=currency, at=at)
        if promotion.min_amount_nano <= amount_nano
    ]
    return max(eligible, key=lambda p: (p.bonus_for(amount_nano), p.pk), default=None)


# --- Saved cards ----------------------------------------------------------------------------


def payment_methods(*, account: Account):
    return PaymentMethod.objects.filter(account=account, removed_at__isnull=True).order_by(
        "-is_default", "-created_at", "-pk"
    )


def default_payment_method(*, account: Account) -> PaymentMethod | None:
    return payment_methods(account=account).filter(is_default=True).first()


def payment_methods_chargeable(*, account: Account):
    """The saved cards the configured provider can charge: a token means something only to
    the provider that issued it, and a sandbox card must not be charged (by the sandbox)
    once a deployment has switched to another provider or to none."""
    return payment_methods(account=account).filter(provider=card_provider().name)


def card_chargeable(card: PaymentMethod) -> bool:
    """Whether the configured provider can charge this saved card (the rule of
    payment_methods_chargeable, for one card)."""
    return card.provider == card_provider().name


def _refuse_another_providers_card(card: PaymentMethod) -> None:
    if not card_chargeable(card):
        raise ServiceError(_another_providers_card(card))


def _another_providers_card(card: PaymentMethod) -> str:
    return _(
        "%(card)s was saved with a card provider this console no longer uses: it cannot be charged."
    ) % {"card": card}


@sensitive_variables("number", "cvc")
def payment_method_add(
    *,
    account: Account,
    number: str,
    exp_month: int,
    exp_year: int,
    cvc: str,
    actor: User | None,
    make_default: bool = False,
    ip: str | None = None,
) -> PaymentMethod:
    """Tokenise a card with the provider and keep the token, brand and last 4 digits.
    The first card of an account becomes its default."""
    provider = card_provider()
    try:
        card = provider.tokenize(
            number=number,
            exp_month=exp_month,
            exp_year=exp_year,
            cvc=cvc,
            today=timezone.localdate(),
        )
    except CardError as error:
        raise ServiceError(str(error)) from error
    with transaction.atomic():
        live = lock_in_order(PaymentMethod.objects.filter(account=account, removed_at__isnull=True))
        default = make_default or not live
        if default:
            PaymentMethod.objects.filter(pk__in=[m.pk for m in live if m.is_default]).update(
                is_default=False
            )
        fields = {
            "account": account,
            "provider": provider.name,
            "token": card.token,
            "brand": card.brand,
            "last4": card.last4,
            "exp_month": card.exp_month,
            "exp_year": card.exp_year,
            "created_by": actor,
            "created_at": timezone.now(),
        }
        try:
            with transaction.atomic():
                method = PaymentMethod.objects.create(is_default=default, **fields)
        except IntegrityError:
            # Another first card was added at the same moment and became the default.
            default = False
            method = PaymentMethod.objects.create(is_default=False, **fields)
        audit_record(
            action="billing.payment_method_add",
            account=account,
            actor=actor,
            target=method,
            ip=ip,
            metadata={"card": str(method), "default": default},
        )
    return method


def payment_method_set_default(
    *, method: PaymentMethod, actor: User | None, ip: str | None = None
) -> None:
    with transaction.atomic():
        live = lock_in_order(
            PaymentMethod.objects.filter(account_id=method.account_id, removed_at__isnull=True)
        )
        if method.pk not in {m.pk for m in live}:
            raise ServiceError(_("This card has been removed."))
        PaymentMethod.objects.filter(pk__in=[m.pk for m in live if m.is_default]).update(
            is_default=False
        )
        PaymentMethod.objects.filter(pk=method.pk).update(is_default=True)
        audit_record(
            action="billing.payment_method_default",
            account=method.account,
            actor=actor,
            target=method,
            ip=ip,
            metadata={"card": str(method)},
        )


def payment_method_remove(
    *, method: PaymentMethod, actor: User | None, ip: str | None = None
) -> None:
    """Remove a card. The newest remaining card becomes the default; with none left,
    auto-recharge (which needs a default card) turns off."""
    account = method.account
    with transaction.atomic():
        live = lock_in_order(PaymentMethod.objects.filter(account=account, removed_at__isnull=True))
        removed = next((m for m in live if m.pk == method.pk), None)
        if removed is None:
            return  # removed already: a double click
        PaymentMethod.objects.filter(pk=removed.pk).update(
            removed_at=timezone.now(), is_default=False
        )
        rest = sorted((m for m in live if m.pk != removed.pk), key=lambda m: (m.created_at, m.pk))
        if removed.is_default and rest:
            PaymentMethod.objects.filter(pk=rest[-1].pk).update(is_default=True)
        audit_record(
            action="billing.payment_method_remove",
            account=account,
            actor=actor,
            target=removed,
            ip=ip,
            metadata={"card": str(removed)},
        )
        if not rest:
            auto_recharge_disable(
                account=account,
                reason=_("The last saved card was removed."),
                actor=actor,
                actor_kind=AuditEvent.ActorKind.USER,
            )


# --- Payments -------------------------------------------------------------------------------


def _new_payment(
    account: Account, *, amount_nano: int, bonus_nano: int | None = None, **fields
) -> Payment:
    """Record a payment. Without an explicit bonus, the promotion in force decides it."""
    with transaction.atomic():
        # A payment in flight fixes the currency, as moved money does: it is credited in
        # the currency it was asked in. Read under the account's lock, which a currency
        # change takes too.
        locked = Account.objects.select_for_update().get(pk=account.pk)
        now = timezone.now()
        mark_money_moved(locked, now)
        account.currency, account.money_moved_at = locked.currency, locked.money_moved_at
        promotion = None
        if bonus_nano is None:
            promotion = promotion_for(currency=locked.currency, amount_nano=amount_nano)
            bonus_nano = promotion.bonus_for(amount_nano) if promotion else 0
        return Payment.objects.create(
            account=account,
            currency=locked.currency,
            amount_nano=amount_nano,
            bonus_nano=bonus_nano,
            promotion=promotion,
            created_at=now,
            **fields,
        )


def payment_start_card(
    *,
    account: Account,
    amount_nano: int,
    payment_method: PaymentMethod,
    actor: User | None,
) -> Payment:
    """Charge a saved card. Returns the payment as it stands once the provider answered:
    succeeded (credited), declined, or pending (settled later by a task or the sweep)."""
    check_recharge_amount(account=account, amount_nano=amount_nano)
    _check_card(account, payment_method)
    payment = _new_card_payment(account, payment_method, amount_nano, actor=actor, auto=False)
    return _charge_and_settle(payment, payment_method)


def payment_start_purchase(
    *,
    account: Account,
    card: PaymentMethod,
    amount_nano: int,
    purchase: dict,
    actor: User | None,
    reference: str = "",
    purpose: str = Payment.Purpose.PLAN,
) -> Payment:
    """Charge a saved card for something an app above billing sells (`purchase` says what,
    for the app's `purchase_paid` receiver), at its price: no promotion bonus, not a
    recharge. Returns the payment as the provider left it (succeeded: delivered; declined;
    pending: settled later, as a recharge's). `reference`, when given, makes the payment
    idempotent: a second start with it raises IntegrityError and charges nothing (a renewal
    job run twice)."""
    _check_card(account, card)
    if amount_nano <= 0:
        raise ServiceError(_("The amount must be more than zero."))
    payment = _new_payment(
        account,
        purpose=purpose,
        purchase=purchase,
        method=Payment.Method.CARD,
        provider=card.provider,
        reference=reference or f"pay_{secrets.token_hex(12)}",
        amount_nano=amount_nano,
        bonus_nano=0,
        payment_method=card,
        created_by=actor,
    )
    return _charge_and_settle(payment, card)


def _check_card(account: Account, card: PaymentMethod) -> None:
    """Refuse a card that is not one of the account's saved cards, or that the configured
    provider cannot charge."""
    if card.account_id != account.pk or card.removed_at is not None:
        raise ServiceError(_("Choose one of this account's saved cards."))
    _refuse_another_providers_card(card)


def _new_card_payment(account, card, amount_nano, *, actor, auto) -> Payment:
    return _new_payment(
        account,
        method=Payment.Method.CARD,
        provider=card.provider,
        reference=f"pay_{secrets.token_hex(12)}",
        amount_nano=amount_nano,
        payment_method=card,
        auto=auto,
        created_by=actor,
    )


def _charge_and_settle(payment: Payment, card: PaymentMethod) -> Payment:
    # Callers refused a card of another provider before recording the payment.
    # No transaction is open here: the provider may take seconds.
    outcome = card_provider().charge(
        token=card.token,
        amount_nano=payment.amount_nano,
        currency=payment.currency,
        reference=payment.reference,
    )
    # The provider's reference is kept at once, in its own statement: if settling fails
    # (a lost connection, a killed worker), the sweep can still ask what became of it.
    if outcome.provider_reference:
        Payment.objects.filter(pk=payment.pk, provider_reference="").update(
            provider_reference=outcome.provider_reference
        )
    return payment_settle(payment_id=payment.pk, outcome=outcome)


def payment_start_bank_transfer(
    *, account: Account, amount_nano: int, actor: User | None
) -> Payment:
    """A bank transfer the account will make: pending until staff confirm the money
    arrived. Its reference goes in the transfer's memo."""
    check_recharge_amount(account=account, amount_nano=amount_nano)
    for _attempt in range(5):
        code = "BT" + "".join(secrets.choice(_TRANSFER_ALPHABET) for _ in range(10))
        try:
            with transaction.atomic():
                return _new_payment(
                    account,
                    method=Payment.Method.BANK_TRANSFER,
                    provider="bank",
                    reference=code,
                    amount_nano=amount_nano,
                    created_by=actor,
                )
        except IntegrityError:
            continue  # 31^10 codes: a collision is rare, and another draw fixes it
    raise ServiceError(_("Could not create a transfer reference. Try again."))


def _enqueue_confirmation(payment_id: int) -> None:
    transaction.on_commit(
        lambda: tasks.confirm_payment.apply_async(
            (payment_id,), countdown=settings.SANDBOX_PENDING_SECONDS + 1
        ),
        robust=True,  # a broker that is down must not undo a recorded payment: the sweep settles
    )


def payment_settle(
    *, payment_id: int, outcome: ChargeOutcome, unacknowledged_only: bool = False
) -> Payment:
    """Record what the provider said of a payment. Credits a success exactly once.
    `unacknowledged_only`: change nothing if the provider has acknowledged it meanwhile."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update().select_related("account").get(pk=payment_id)
        if unacknowledged_only and payment.provider_reference:
            return payment
        if not payment.is_pending:
            if outcome.status != payment.status:
                logger.warning(
                    "payment %s is %s; ignoring a later %s",
                    payment.reference,
                    payment.status,
                    outcome.status,
                )
            return payment
        if outcome.provider_reference and not payment.provider_reference:
            payment.provider_reference = outcome.provider_reference
        now = timezone.now()
        if outcome.status == SUCCEEDED:
            # The person who paid, or the system for auto-recharge and renewals.
            actor_kind = (
                AuditEvent.ActorKind.USER if payment.created_by_id else AuditEvent.ActorKind.SYSTEM
            )
            if payment.purpose == Payment.Purpose.RECHARGE:
                _credit(payment, now=now, actor=payment.created_by, actor_kind=actor_kind)
            else:
                _deliver(payment, now=now, actor_kind=actor_kind)
        elif outcome.status == DECLINED:
            payment.status = Payment.Status.DECLINED
            payment.failure_message = (outcome.message or _("The payment was declined."))[:200]
            payment.settled_at = now
            if payment.auto:
                auto_recharge_disable(
                    account=payment.account,
                    reason=_("The card was declined: %(message)s")
                    % {"message": payment.failure_message},
                    notify=True,
                )
        elif outcome.status == PENDING:
            _enqueue_confirmation(payment.pk)
        else:
            raise ValueError(f"unknown payment outcome {outcome.status!r}")
        payment.save(
            update_fields=[
                "provider_reference",
                "status",
                "failure_message",
                "settled_at",
                "ledger_entry",
            ]
        )
    return payment


def _credit(
    payment: Payment, *, now: datetime, actor: User | None, actor_kind: str, reason: str = ""
):
    """Credit a payment the caller holds locked (the recharge repays arrears first)."""
    if payment.currency != payment.account.currency:
        raise ServiceError("a payment is credited in the currency it was made in")
    result = recharge(
        account=payment.account,
        amount_nano=payment.amount_nano,
        bonus_nano=payment.bonus_nano,
        reference=payment.reference,
        method=payment.method,
        actor=actor,
        actor_kind=actor_kind,
        reason=reason,
    )
    payment.status = Payment.Status.SUCCEEDED
    payment.ledger_entry = result.entry
    payment.settled_at = now


def _deliver(payment: Payment, *, now: datetime, actor_kind: str) -> None:
    """A purchase's card payment succeeded: the app that sold it delivers it (billing's
    `purchase_paid` signal). If it cannot any more, the money was still taken: it goes to
    the balance as a recharge without bonus, and the payment says why."""
    try:
        with transaction.atomic():  # a savepoint: a refusal leaves nothing of the delivery
            entries = [
                entry
                for _receiver, entry in purchase_paid.send(Payment, payment=payment, at=now)
                if entry is not None
            ]
            if len(entries) != 1:
                raise ServiceError(_("Nothing here sells this purchase."))
    except ServiceError as error:
        logger.warning("payment %s: purchase not delivered: %s", payment.reference, error)
        _credit(payment, now=now, actor=payment.created_by, actor_kind=actor_kind)
        payment.failure_message = (
            _("%(reason)s The payment was added to your balance.") % {"reason": error}
        )[:200]
        return
    payment.status = Payment.Status.SUCCEEDED
    payment.ledger_entry = entries[0]
    payment.settled_at = now


def payment_confirm_pending(*, payment_id: int) -> Payment | None:
    """Ask the provider what became of a pending card payment, and settle it if decided
    (the delayed confirmation task and the sweep both call this)."""
    payment = Payment.objects.filter(pk=payment_id).first()
    if payment is None or not payment.is_pending or payment.method != Payment.Method.CARD:
        return payment
    if not payment.provider_reference:
        if payment.created_at > timezone.now() - timedelta(
            seconds=settings.PAYMENT_PROVIDER_TIMEOUT_SECONDS
        ):
            return payment  # the provider may still be answering
        # Recorded, but the provider never acknowledged it (a crash before its answer).
        # No money was taken that we know of; a real provider would be asked by our
        # reference first.
        return payment_settle(
            payment_id=payment.pk,
            outcome=ChargeOutcome(DECLINED, message=_("The provider never confirmed the charge.")),
            unacknowledged_only=True,
        )
    outcome = provider_named(payment.provider).retrieve(
        provider_reference=payment.provider_reference
    )
    if outcome.status == PENDING:
        return payment
    return payment_settle(payment_id=payment.pk, outcome=outcome)


def payment_confirm_bank_transfer(*, payment: Payment, actor: User, reason: str = "") -> Payment:
    """Staff saw the transfer arrive: credit it (with its promotion bonus)."""
    if payment.method != Payment.Method.BANK_TRANSFER:
        raise ServiceError(_("Only bank transfers are confirmed by staff."))
    with transaction.atomic():
        locked = Payment.objects.select_for_update().select_related("account").get(pk=payment.pk)
        if locked.status == Payment.Status.SUCCEEDED:
            return locked  # confirmed already
        if not locked.is_pending:
            raise ServiceError(_("This transfer was cancelled; record a new one."))
        _credit(
            locked,
            now=timezone.now(),
            actor=actor,
            actor_kind=AuditEvent.ActorKind.STAFF,
            reason=reason or "bank transfer",
        )
        locked.save(update_fields=["status", "ledger_entry", "settled_at"])
    return locked


def payment_cancel(
    *, payment: Payment, actor: User | None, reason: str = "", ip: str | None = None
) -> Payment:
    """Cancel a pending bank transfer (the account changed its mind, or it expired)."""
    if payment.method != Payment.Method.BANK_TRANSFER:
        raise ServiceError(_("Only a pending bank transfer can be cancelled."))
    with transaction.atomic():
        locked = Payment.objects.select_for_update().get(pk=payment.pk)
        if locked.status == Payment.Status.CANCELLED:
            return locked
        if not locked.is_pending:
            raise ServiceError(_("Only a pending bank transfer can be cancelled."))
        locked.status = Payment.Status.CANCELLED
        locked.failure_message = (reason or _("Cancelled."))[:200]
        locked.settled_at = timezone.now()
        locked.save(update_fields=["status", "failure_message", "settled_at"])
        audit_record(
            action="billing.payment_cancel",
            account=locked.account,
            actor=actor,
            actor_kind=AuditEvent.ActorKind.USER if actor else AuditEvent.ActorKind.SYSTEM,
            target=locked,
            reason=reason,
            ip=ip,
            metadata={"reference": locked.reference},
        )
    return locked


def payment_record_manual(
    *,
    account: Account,
    amount_nano: int,
    reference: str,
    bonus_nano: int = 0,
    actor: User | None = None,
    reason: str = "",
) -> tuple[Payment, bool]:
    """A staff top-up (the `recharge` command): a paid recharge with method `manual`, with
    an explicit bonus (promotions apply to what customers pay themselves). Idempotent on
    `reference`: returns (payment, replayed)."""
    reference = (reference or "").strip()
    if not reference or len(reference) > 100:
        raise ServiceError(_("A reference of 1 to 100 characters is required."))
    if amount_nano <= 0 or bonus_nano < 0:
        raise ServiceError(_("The amount must be more than zero."))
    existing = Payment.objects.filter(provider="manual", provider_reference=reference).first()
    if existing is not None:
        return _manual_replay(existing, account)
    try:
        with transaction.atomic():
            payment = _new_payment(
                account,
                method=Payment.Method.MANUAL,
                provider="manual",
                reference=f"man_{secrets.token_hex(12)}",
                provider_reference=reference,
                amount_nano=amount_nano,
                bonus_nano=bonus_nano,
                created_by=actor,
            )
            _credit(
                payment,
                now=timezone.now(),
                actor=actor,
                actor_kind=AuditEvent.ActorKind.STAFF,
                reason=reason,
            )
            payment.save(update_fields=["status", "ledger_entry", "settled_at"])
    except IntegrityError:
        existing = Payment.objects.filter(provider="manual", provider_reference=reference).first()
        if existing is None:
            raise
        return _manual_replay(existing, account)
    return payment, False


def _manual_replay(existing: Payment, account: Account) -> tuple[Payment, bool]:
    # A reference names one transfer: on another account it is a mistake, not a replay.
    if existing.account_id != account.pk:
        raise ServiceError(_("This reference is already recorded for another account."))
    return existing, True


def payments_sweep_pending(*, now: datetime | None = None) -> dict[str, int]:
    """The safety net for confirmations Redis lost: settle card payments pending longer
    than a confirmation should take, and expire bank transfers never confirmed."""
    now = now or timezone.now()
    settled = expired = 0
    card_cutoff = now - timedelta(seconds=settings.SANDBOX_PENDING_SECONDS + 10)
    for payment_id in Payment.objects.filter(
        status=Payment.Status.PENDING, method=Payment.Method.CARD, created_at__lte=card_cutoff
    ).values_list("pk", flat=True):
        payment = payment_confirm_pending(payment_id=payment_id)
        settled += payment is not None and not payment.is_pending
    transfer_cutoff = now - timedelta(days=settings.BANK_TRANSFER_VALID_DAYS)
    for payment in Payment.objects.filter(
        status=Payment.Status.PENDING,
        method=Payment.Method.BANK_TRANSFER,
        created_at__lte=transfer_cutoff,
    ):
        payment_cancel(
            payment=payment,
            actor=None,
            reason=_("Expired: no transfer arrived within %(days)s days.")
            % {"days": settings.BANK_TRANSFER_VALID_DAYS},
        )
        expired += 1
    return {"settled": settled, "expired": expired}


def payment_history(*, account: Account, limit: int = 50):
    return (
        Payment.objects.filter(account=account)
        .select_related("payment_method", "promotion")
        .order_by("-created_at", "-pk")[:limit]
    )


# --- Auto-recharge --------------------------------------------------------------------------


def billing_profile(*, account: Account) -> BillingProfile:
    """The account's profile, or an unsaved default: pages read it, only services write it."""
    return BillingProfile.objects.filter(account=account).first() or BillingProfile(account=account)


def _locked_profile(account: Account) -> BillingProfile:
    BillingProfile.objects.get_or_create(account=account)
    return BillingProfile.objects.select_for_update().get(account=account)


def auto_recharge_configure(
    *,
    account: Account,
    enabled: bool,
    threshold_nano: int | None,
    amount_nano: int | None,
    monthly_limit_nano: int | None,
    actor: User | None,
    ip: str | None = None,
) -> BillingProfile:
    """Turn auto-recharge on (with its three amounts and a default card) or off."""
    if enabled:
        if not (threshold_nano and amount_nano and monthly_limit_nano):
            raise ServiceError(_("Enter the threshold, the amount and the monthly limit."))
        check_recharge_amount(account=account, amount_nano=amount_nano)
        if amount_nano < threshold_nano:
            # Smaller, one recharge could leave the balance below the threshold, and the
            # sweep would charge again every few minutes until the monthly limit.
            raise ServiceError(_("Recharge at least the threshold amount each time."))
        if monthly_limit_nano < amount_nano:
            raise ServiceError(_("The monthly limit must be at least the recharge amount."))
        card = default_payment_method(account=account)
        if card is None:
            raise ServiceError(_("Add a card first: auto-recharge charges the default card."))
        _refuse_another_providers_card(card)
    with transaction.atomic():
        profile = _locked_profile(account)
        before = {
            "enabled": profile.auto_recharge_enabled,
            "threshold_nano": profile.auto_recharge_threshold_nano,
            "amount_nano": profile.auto_recharge_amount_nano,
            "monthly_limit_nano": profile.auto_recharge_monthly_limit_nano,
        }
        profile.auto_recharge_enabled = enabled
        if enabled:
            profile.auto_recharge_threshold_nano = threshold_nano
            profile.auto_recharge_amount_nano = amount_nano
            profile.auto_recharge_monthly_limit_nano = monthly_limit_nano
            profile.auto_recharge_disabled_reason = ""
            profile.auto_recharge_disabled_at = None
        profile.save()
        Wallet.objects.get_or_create(account=account)
        Wallet.objects.filter(account=account).update(
            auto_recharge_below_nano=threshold_nano if enabled else None
        )
        after = {
            "enabled": enabled,
            "threshold_nano": profile.auto_recharge_threshold_nano,
            "amount_nano": profile.auto_recharge_amount_nano,
            "monthly_limit_nano": profile.auto_recharge_monthly_limit_nano,
        }
        audit_record(
            action="billing.auto_recharge_configure",
            account=account,
            actor=actor,
            target=profile,
            ip=ip,
            metadata={
                "changes": {k: [before[k], after[k]] for k in after if before[k] != after[k]}
            },
        )
        if enabled:
            # Already below the threshold: recharge now rather than after the next charge.
            _enqueue_auto_recharge(account.pk)
    return profile


def auto_recharge_disable(
    *,
    account: Account,
    reason: str,
    actor: User | None = None,
    actor_kind: str = AuditEvent.ActorKind.SYSTEM,
    notify: bool = False,
) -> None:
    """Turn auto-recharge off and say why (a declined card, a removed card)."""
    with transaction.atomic():
        profile = _locked_profile(account)
        if not profile.auto_recharge_enabled:
            return
        profile.auto_recharge_enabled = False
        profile.auto_recharge_disabled_reason = reason[:200]
        profile.auto_recharge_disabled_at = timezone.now()
        profile.save(
            update_fields=[
                "auto_recharge_enabled",
                "auto_recharge_disabled_reason",
                "auto_recharge_disabled_at",
            ]
        )
        Wallet.objects.filter(account=account).update(auto_recharge_below_nano=None)
        audit_record(
            action="billing.auto_recharge_disable",
            account=account,
            actor=actor,
            actor_kind=actor_kind,
            target=profile,
            reason=reason,
        )
        if notify:
            # Queued in this transaction, sent after commit (retried: console/emails.py).
            _notify_auto_recharge_off(account_id=account.pk, reason=reason)


def _notify_auto_recharge_off(*, account_id: int, reason: str) -> None:
    """Email the people who can fix it: owners, admins and finance."""
    account = Account.objects.get(pk=account_id)
    memberships = Membership.objects.filter(account=account).select_related("user")
    for membership in memberships:
        if not role_can(membership.role, "billing.manage"):
            continue
        user = membership.user
        with translation.override(user.language or settings.LANGUAGE_CODE):
            email_queue(
                kind="auto_recharge_off",
                to=user.email,
                subject=_("Auto-recharge was turned off for %(account)s")
                % {"account": account.name},
                body=render_to_string(
                    "billing/email/auto_recharge_off.txt",
                    {
                        "account": account,
                        "reason": reason,
                        "link": settings.SITE_URL + reverse("billing:settings"),
                    },
                ),
            )


def _enqueue_auto_recharge(account_id: int) -> None:
    transaction.on_commit(lambda: tasks.auto_recharge.delay(account_id), robust=True)


def auto_recharged_this_month(*, account: Account, now: datetime | None = None) -> int:
    """What auto-recharge charged (or is charging) in the current month."""
    start, _end = month_bounds(
        time_zone=account.time_zone, month=current_month(account=account, now=now)
    )
    return (
        Payment.objects.filter(
            account=account,
            auto=True,
            status__in=[Payment.Status.PENDING, Payment.Status.SUCCEEDED],
            created_at__gte=start,
        ).aggregate(total=Sum("amount_nano"))["total"]
        or 0
    )


def auto_recharge_run(*, account_id: int) -> Payment | None:
    """Recharge if auto-recharge is on, the balance is below its threshold, nothing is in
    flight and the month's limit allows. Safe to call any number of times."""
    account = Account.objects.filter(pk=account_id).first()
    if account is None:
        return None
    try:
        with transaction.atomic():
            profile = _locked_profile(account)
            if not profile.auto_recharge_enabled:
                return None
            wallet = Wallet.objects.get(account=account)
            if wallet.recharge_nano + wallet.bonus_nano >= profile.auto_recharge_threshold_nano:
                return None
            amount = profile.auto_recharge_amount_nano
            if (
                auto_recharged_this_month(account=account) + amount
                > profile.auto_recharge_monthly_limit_nano
            ):
                logger.info("auto-recharge of account %s: monthly limit reached", account.pk)
                return None
            card = default_payment_method(account=account)
            if card is None:
                auto_recharge_disable(
                    account=account, reason=_("There is no default card."), notify=True
                )
                return None
            if not card_chargeable(card):
                # As a declined card does, minus the payment: nothing was asked of a provider.
                auto_recharge_disable(
                    account=account, reason=_another_providers_card(card), notify=True
                )
                return None
            # Recorded pending before the card is charged: the unique "one pending
            # auto-recharge" constraint turns a concurrent second run away here.
            payment = _new_card_payment(account, card, amount, actor=None, auto=True)
    except IntegrityError:
        return None  # another run has one in flight
    return _charge_and_settle(payment, card)


def auto_recharge_sweep() -> int:
    """Accounts with auto-recharge on and a balance below the threshold (a crossing whose
    task was lost, or one already below when it was turned on)."""
    ran = 0
    below = Wallet.objects.filter(
        auto_recharge_below_nano__isnull=False,
        auto_recharge_below_nano__gt=F("recharge_nano") + F("bonus_nano"),
    ).values_list("account_id", flat=True)
    for account_id in below:
        ran += auto_recharge_run(account_id=account_id) is not None
    return ran
