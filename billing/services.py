"""Writes of money: the wallet, the ledger, resource packs and `charge_usage`.

Every change of a balance or a pack is one immutable ledger entry written in the same
transaction as the change. Locks are taken wallet first, then packs in primary-key order,
in every path, so two paths never deadlock each other. Outside references (a payment
reference, a grant reference, a request id) are unique per account: a replay changes nothing.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from billing import writes
from billing.models import LedgerEntry, ModelPrice, PackProduct, ResourcePack, Wallet
from billing.selectors import (
    account_months,
    current_month,
    month_bounds,
    next_month,
    paid_totals,
    price_for,
)
from console.models import Account, AuditEvent, User
from console.money import format_amount
from console.services import ServiceError, account_promote_tier, audit_record

MILLION = 1_000_000
STARTER_PACK_REFERENCE = "starter"


class UnknownModel(ServiceError):
    pass


# --- Pure arithmetic ------------------------------------------------------------------------


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


# --- The wallet -----------------------------------------------------------------------------


def wallet_open(*, account: Account) -> Wallet:
    """Create the wallet of a new account (empty: a new account gets no pack by itself)."""
    wallet, _created = Wallet.objects.get_or_create(account=account)
    return wallet


def starter_pack_grant(*, account: Account) -> ResourcePack | None:
    """The starter pack, granted to `account` at most once (its grant reference is unique per
    account, so a replay returns the same pack). Which account of which person gets one is
    decided by the caller: portal/services.py `email_verify` for a sign-up."""
    if settings.STARTER_PACK_TOKENS <= 0:
        return None
    pack, _replayed = pack_grant(
        account=account,
        tokens=settings.STARTER_PACK_TOKENS,
        days=settings.STARTER_PACK_DAYS,
        reference=STARTER_PACK_REFERENCE,
        name=_("Starter pack"),
        source=ResourcePack.Source.STARTER,
        actor=None,
        actor_kind=AuditEvent.ActorKind.SYSTEM,
    )
    return pack


def wallet_lock(account: Account) -> Wallet:
    """Lock the account's wallet row: every write of the account's money (and invoice
    requests, which must see the money still) takes it first."""
    wallet = Wallet.objects.select_for_update().filter(account=account).first()
    if wallet is None:
        # Accounts made before wallets existed get theirs on first use.
        Wallet.objects.get_or_create(account=account)
        wallet = Wallet.objects.select_for_update().get(account=account)
    return wallet


def mark_money_moved(account: Account, at: datetime) -> None:
    """From the first money movement (or payment started) on, the currency is fixed."""
    if account.money_moved_at is not None:
        return  # the common case on the hot path: no statement at all
    Account.objects.filter(pk=account.pk, money_moved_at__isnull=True).update(money_moved_at=at)
    account.money_moved_at = at


def _entry(account: Account, kind: str, **fields) -> LedgerEntry:
    return LedgerEntry.objects.create(
        account=account, kind=kind, created_at=fields.pop("created_at", timezone.now()), **fields
    )


def _after_balance_drop(wallet: Wallet, spent_nano: int) -> None:
    """Auto-recharge starts after the charge that takes the balance below its threshold
    (on commit: the charge must stand before a payment is tried); the balance-low alert is
    checked after the charge that takes it below the alert's threshold."""
    before = wallet.recharge_nano + wallet.bonus_nano
    alert_below = wallet.alert_below_nano
    if alert_below is not None and spent_nano and before >= alert_below > before - spent_nano:
        from alerts.services import schedule_evaluation

        schedule_evaluation(wallet.account_id)
    below = wallet.auto_recharge_below_nano
    if below is not None and spent_nano and before >= below > before - spent_nano:
        from billing.tasks import auto_recharge

        account_id = wallet.account_id
        # robust: the gateway's answer must not fail because the broker is down; the
        # auto-recharge sweep catches the crossing later.
        transaction.on_commit(
            lambda: auto_recharge.apply_async((account_id,), retry=False), robust=True
        )


def _existing(account: Account, kind: str, reference: str) -> LedgerEntry | None:
    return LedgerEntry.objects.filter(account=account, kind=kind, reference=reference).first()


def _check_reference(reference: str) -> str:
    reference = (reference or "").strip()
    if not reference or len(reference) > 100:
        raise ServiceError(_("A reference of 1 to 100 characters is required."))
    return reference


def _credit(wallet: Wallet, amount: int, *, to: str) -> tuple[int, int]:
    """Add `amount` to the `to` balance after repaying arrears. Returns (credited, repaid)."""
    repaid = min(wallet.arrears_nano, amount)
    wallet.arrears_nano -= repaid
    credited = amount - repaid
    setattr(wallet, to, getattr(wallet, to) + credited)
    return credited, repaid


def _bonus_entry(wallet, account, amount_nano, *, reference, actor, now, metadata):
    """Credit bonus (arrears first) and write its ledger entry; the caller holds the lock."""
    credited, repaid = _credit(wallet, amount_nano, to="bonus_nano")
    return _entry(
        account,
        LedgerEntry.Kind.BONUS_GRANT,
        bonus_delta_nano=credited,
        arrears_delta_nano=-repaid,
        reference=reference,
        actor=actor,
        created_at=now,
        metadata={"granted_nano": amount_nano, **metadata},
    )


@dataclass(frozen=True)
class RechargeResult:
    entry: LedgerEntry
    bonus_entry: LedgerEntry | None
    replayed: bool


def recharge(
    *,
    account: Account,
    amount_nano: int,
    reference: str,
    method: str = "manual",
    bonus_nano: int = 0,
    actor: User | None = None,
    actor_kind: str = AuditEvent.ActorKind.STAFF,
    reason: str = "",
) -> RechargeResult:
    """A paid recharge (repaying arrears first), with an optional bonus grant beside it.
    Idempotent on `reference`: a replay returns the original entries and changes nothing."""
    reference = _check_reference(reference)
    if amount_nano <= 0 or bonus_nano < 0:
        raise ServiceError(_("The amount must be more than zero."))
    existing = _existing(account, LedgerEntry.Kind.RECHARGE, reference)
    if existing is not None:
        return RechargeResult(
            existing, _existing(account, LedgerEntry.Kind.BONUS_GRANT, reference), True
        )
    try:
        with transaction.atomic():
            wallet = wallet_lock(account)
            now = timezone.now()
            credited, repaid = _credit(wallet, amount_nano, to="recharge_nano")
            entry = _entry(
                account,
                LedgerEntry.Kind.RECHARGE,
                recharge_delta_nano=credited,
                arrears_delta_nano=-repaid,
                reference=reference,
                actor=actor,
                created_at=now,
                metadata={"method": method, "paid_nano": amount_nano},
            )
            bonus_entry = None
            if bonus_nano:
                bonus_entry = _bonus_entry(
                    wallet,
                    account,
                    bonus_nano,
                    reference=reference,
                    actor=actor,
                    now=now,
                    metadata={"with": "recharge"},
                )
            wallet.save(update_fields=["recharge_nano", "bonus_nano", "arrears_nano"])
            mark_money_moved(account, now)
            if wallet.alert_below_nano is not None:
                # A recharge may lift the balance back over the alert's threshold: re-arm it.
                from alerts.services import schedule_evaluation

                schedule_evaluation(account.pk)
            account_promote_tier(
                account=account, paid_nano=paid_totals(account=account).net_paid_nano
            )
            audit_record(
                action="billing.recharge",
                account=account,
                actor=actor,
                actor_kind=actor_kind,
                target=entry,
                reason=reason,
                metadata={
                    "amount_nano": amount_nano,
                    "bonus_nano": bonus_nano,
                    "method": method,
                    "reference": reference,
                },
            )
    except IntegrityError:
        # A concurrent replay of the same reference won the unique constraint.
        existing = _existing(account, LedgerEntry.Kind.RECHARGE, reference)
        if existing is None:
            raise
        return RechargeResult(
            existing, _existing(account, LedgerEntry.Kind.BONUS_GRANT, reference), True
        )
    return RechargeResult(entry, bonus_entry, False)


def bonus_grant(
    *,
    account: Account,
    amount_nano: int,
    reference: str,
    actor: User | None = None,
    actor_kind: str = AuditEvent.ActorKind.STAFF,
    reason: str = "",
) -> tuple[LedgerEntry, bool]:
    """Gift credit (repaying arrears first). Idempotent on `reference`."""
    reference = _check_reference(reference)
    if amount_nano <= 0:
        raise ServiceError(_("The amount must be more than zero."))
    existing = _existing(account, LedgerEntry.Kind.BONUS_GRANT, reference)
    if existing is not None:
        return existing, True
    with transaction.atomic():
        wallet = wallet_lock(account)
        now = timezone.now()
        entry = _bonus_entry(
            wallet, account, amount_nano, reference=reference, actor=actor, now=now, metadata={}
        )
        wallet.save(update_fields=["bonus_nano", "arrears_nano"])
        mark_money_moved(account, now)
        audit_record(
            action="billing.bonus_grant",
            account=account,
            actor=actor,
            actor_kind=actor_kind,
            target=entry,
            reason=reason,
            metadata={"amount_nano": amount_nano, "reference": reference},
        )
    return entry, False


def _refund_allocations(account: Account, amount_nano: int) -> list[dict]:
    """Which recharges a refund gives back, newest first, and the bonus paid with each to
    claw back in proportion: floor(refunded part × bonus / paid)."""
    refunded = defaultdict(int)
    for metadata in LedgerEntry.objects.filter(
        account=account, kind=LedgerEntry.Kind.REFUND
    ).values_list("metadata", flat=True):
        for line in metadata["allocations"]:
            refunded[line["recharge"]] += line["amount_nano"]
    bonus_with = dict(
        LedgerEntry.objects.filter(
            account=account, kind=LedgerEntry.Kind.BONUS_GRANT, metadata__with="recharge"
        ).values_list("reference", "metadata__granted_nano")
    )
    lines, left = [], amount_nano
    for entry in LedgerEntry.objects.filter(
        account=account, kind=LedgerEntry.Kind.RECHARGE
    ).order_by("-created_at", "-pk"):
        paid = entry.recharge_delta_nano - entry.arrears_delta_nano
        take = min(paid - refunded[entry.pk], left)
        if take <= 0:
            continue
        bonus = int(bonus_with.get(entry.reference) or 0)
        lines.append(
            {"recharge": entry.pk, "amount_nano": take, "clawback_nano": take * bonus // paid}
        )
        left -= take
        if not left:
            break
    if left:
        raise ServiceError(_("The refund is more than the recharges it could give back."))
    return lines


def refund(
    *,
    account: Account,
    amount_nano: int,
    reference: str,
    reason: str,
    actor: User | None = None,
    actor_kind: str = AuditEvent.ActorKind.STAFF,
) -> tuple[LedgerEntry, bool]:
    """Give back paid money (staff). At most min(recharge balance, paid − refunded −
    invoiced); bonus is never refunded, and the bonus that came with the refunded
    recharges is clawed back in proportion, at most down to a zero bonus balance.
    The money itself is paid back out of band (the provider's dashboard or a transfer);
    this records it. Idempotent on `reference`: returns (entry, replayed)."""
    reference = _check_reference(reference)
    reason = (reason or "").strip()
    if not reason:
        raise ServiceError(_("Give a reason for the refund."))
    if amount_nano <= 0:
        raise ServiceError(_("The amount must be more than zero."))
    existing = _existing(account, LedgerEntry.Kind.REFUND, reference)
    if existing is not None:
        return existing, True
    with transaction.atomic():
        # The wallet lock also serialises invoice requests, so what is invoiceable cannot
        # change while this decides.
        wallet = wallet_lock(account)
        existing = _existing(account, LedgerEntry.Kind.REFUND, reference)
        if existing is not None:
            return existing, True  # the same refund, recorded while this one waited
        refundable = min(wallet.recharge_nano, paid_totals(account=account).invoiceable_nano)
        if amount_nano > refundable:
            raise ServiceError(
                _("At most %(amount)s can be refunded: the recharge balance less invoices.")
                % {"amount": format_amount(max(refundable, 0), account.currency)}
            )
        allocations = _refund_allocations(account, amount_nano)
        clawback = min(sum(line["clawback_nano"] for line in allocations), wallet.bonus_nano)
        wallet.recharge_nano -= amount_nano
        wallet.bonus_nano -= clawback
        wallet.save(update_fields=["recharge_nano", "bonus_nano"])
        now = timezone.now()
        entry = _entry(
            account,
            LedgerEntry.Kind.REFUND,
            recharge_delta_nano=-amount_nano,
            bonus_delta_nano=-clawback,
            reference=reference,
            actor=actor,
            created_at=now,
            metadata={"allocations": allocations, "reason": reason, "clawback_nano": clawback},
        )
        audit_record(
            action="billing.refund",
            account=account,
            actor=actor,
            actor_kind=actor_kind,
            target=entry,
            reason=reason,
            metadata={
                "amount_nano": amount_nano,
                "bonus_clawback_nano": clawback,
                "reference": reference,
            },
        )
    return entry, False


# --- Resource packs -------------------------------------------------------------------------


def _check_model(model: str, currency: str) -> None:
    if model and price_for(model=model, currency=currency) is None:
        raise UnknownModel(_("Unknown model: %(model)s.") % {"model": model})


def pack_grant(
    *,
    account: Account,
    tokens: int,
    reference: str,
    days: int = 30,
    model: str = "",
    name: str = "",
    source: str = ResourcePack.Source.GRANT,
    actor: User | None = None,
    actor_kind: str = AuditEvent.ActorKind.STAFF,
    reason: str = "",
) -> tuple[ResourcePack, bool]:
    """Give an account a pack of tokens. Idempotent on `reference` (returns replayed=True)."""
    reference = _check_reference(reference)
    if tokens <= 0 or tokens > 10**13:
        raise ServiceError(_("The number of tokens must be between 1 and 10^13."))
    if days <= 0 or days > 3650:
        raise ServiceError(_("The validity must be between 1 and 3650 days."))
    _check_model(model, account.currency)
    existing = _existing(account, LedgerEntry.Kind.PACK_GRANT, reference)
    if existing is not None:
        return ResourcePack.objects.get(pk=existing.metadata["pack"]), True
    with transaction.atomic():
        wallet_lock(account)
        # Again under the lock: a grant that raced this one past the first look has committed.
        existing = _existing(account, LedgerEntry.Kind.PACK_GRANT, reference)
        if existing is not None:
            return ResourcePack.objects.get(pk=existing.metadata["pack"]), True
        now = timezone.now()
        pack = ResourcePack.objects.create(
            account=account,
            name=name or _("Granted pack"),
            model=model,
            source=source,
            tokens_total=tokens,
            tokens_remaining=tokens,
            created_at=now,
            expires_at=now + timedelta(days=days),
        )
        _entry(
            account,
            LedgerEntry.Kind.PACK_GRANT,
            reference=reference,
            model=model,
            actor=actor,
            created_at=now,
            metadata={"pack": pack.pk, "tokens": tokens, "days": days, "source": source},
        )
        audit_record(
            action="billing.pack_grant",
            account=account,
            actor=actor,
            actor_kind=actor_kind,
            target=pack,
            reason=reason,
            metadata={"tokens": tokens, "model": model, "days": days, "reference": reference},
        )
    return pack, False


def pack_buy(
    *, account: Account, product: PackProduct, actor: User | None, reference: str = ""
) -> ResourcePack:
    """Buy a pack from the balance (split proportionally). Refused, changing nothing, when
    the balance cannot pay it: a purchase never creates arrears."""
    if not product.active:
        raise ServiceError(_("This pack is not on sale."))
    price = product.price_nano(account.currency)
    with transaction.atomic():
        wallet = wallet_lock(account)
        if wallet.recharge_nano + wallet.bonus_nano < price:
            raise ServiceError(_("Your balance is too low to buy this pack. Recharge first."))
        recharge_part, bonus_part = split_fee(price, wallet.recharge_nano, wallet.bonus_nano)
        _after_balance_drop(wallet, price)
        now = timezone.now()
        pack = ResourcePack.objects.create(
            account=account,
            product=product,
            name=product.name,
            model=product.model,
            source=ResourcePack.Source.PURCHASE,
            tokens_total=product.tokens,
            tokens_remaining=product.tokens,
            created_at=now,
            expires_at=now + timedelta(days=product.validity_days),
        )
        wallet.recharge_nano -= recharge_part
        wallet.bonus_nano -= bonus_part
        wallet.save(update_fields=["recharge_nano", "bonus_nano"])
        entry = _entry(
            account,
            LedgerEntry.Kind.PACK_PURCHASE,
            recharge_delta_nano=-recharge_part,
            bonus_delta_nano=-bonus_part,
            fee_nano=price,
            reference=reference,
            model=product.model,
            actor=actor,
            created_at=now,
            metadata={"pack": pack.pk, "product": product.pk, "tokens": product.tokens},
        )
        mark_money_moved(account, now)
        audit_record(
            action="billing.pack_purchase",
            account=account,
            actor=actor,
            target=entry,
            metadata={"product": product.pk, "price_nano": price},
        )
    return pack


def packs_expire(*, now: datetime | None = None) -> int:
    """Close packs past their expiry, each with a ledger record of the tokens forfeited."""
    now = now or timezone.now()
    closed = 0
    for pack_id, account_id in ResourcePack.objects.past_expiry(at=now).values_list(
        "pk", "account_id"
    ):
        with transaction.atomic():
            account = Account.objects.get(pk=account_id)
            wallet_lock(account)
            pack = ResourcePack.objects.select_for_update().get(pk=pack_id)
            if pack.closed_at is not None:
                continue  # another run closed it meanwhile
            forfeited = pack.tokens_remaining
            pack.closed_at = now
            pack.tokens_remaining = 0
            pack.save(update_fields=["closed_at", "tokens_remaining"])
            _entry(
                account,
                LedgerEntry.Kind.PACK_EXPIRY,
                reference=f"pack-{pack.pk}",
                model=pack.model,
                created_at=now,
                metadata={"pack": pack.pk, "tokens_forfeited": forfeited},
            )
            closed += 1
    return closed


# --- Charging one request -------------------------------------------------------------------


@dataclass(frozen=True)
class PackUse:
    pack_id: int
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class ChargeResult:
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


def _pack_candidates(account: Account, model: str, at: datetime) -> list[int]:
    """The open packs that may cover this model's tokens, read before the wallet lock (no
    lock: `_lock_packs` reads them again under it). A pack granted between this read and
    the lock is used from the next charge on, as if it had been granted just after this
    one."""
    sql = (
        "SELECT id FROM billing_resourcepack WHERE account_id = %s AND closed_at IS NULL"
        " AND expires_at > %s AND tokens_remaining > 0 AND (model = %s OR model = '')"
    )
    with writes.cursor() as cursor:
        cursor.execute(sql, [account.pk, connection.ops.adapt_datetimefield_value(at), model])
        return [row[0] for row in cursor.fetchall()]


def _lock_packs(pack_ids: list[int], model: str, at: datetime) -> list[tuple[int, int]]:
    """Lock the candidate packs (primary-key order, after the wallet) and return (id, tokens
    remaining) in the order they are used: packs for this model before general ones,
    earliest expiry first."""
    placeholders = ", ".join(["%s"] * len(pack_ids))
    for_update = " FOR UPDATE" if connection.features.has_select_for_update else ""
    sql = (
        "SELECT id, model, expires_at, tokens_remaining FROM billing_resourcepack"  # noqa: S608
        f" WHERE id IN ({placeholders}) AND closed_at IS NULL AND expires_at > %s"
        f" AND tokens_remaining > 0 ORDER BY id{for_update}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*pack_ids, connection.ops.adapt_datetimefield_value(at)])
        rows = cursor.fetchall()
    # SQLite hands the expiry back as ISO text, which sorts as the times do.
    rows.sort(key=lambda row: (row[1] != model, row[2], row[0]))
    return [(row[0], row[3]) for row in rows]


def _price_in_force(model: str, currency: str, at: datetime) -> ModelPrice | None:
    """`price_for` as one statement built once: the ORM compiling it showed in the
    settlement's profile."""
    sql = (
        "SELECT input_per_million_nano, output_per_million_nano FROM billing_modelprice"
        " WHERE model = %s AND currency = %s AND effective_from <= %s"
        " ORDER BY effective_from DESC LIMIT 1"
    )
    with writes.cursor() as cursor:
        cursor.execute(sql, [model, currency, connection.ops.adapt_datetimefield_value(at)])
        row = cursor.fetchone()
    if row is None:
        return None
    return ModelPrice(
        model=model,
        currency=currency,
        input_per_million_nano=row[0],
        output_per_million_nano=row[1],
    )


def _charged_entry_id(account: Account, request_id: str) -> int | None:
    with writes.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM billing_ledgerentry WHERE account_id = %s AND request_id = %s",
            [account.pk, request_id],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def _replay(account: Account, request_id: str) -> ChargeResult:
    return _result_from_entry(LedgerEntry.objects.get(account=account, request_id=request_id))


def _lock_wallet_balances(account: Account) -> Wallet:
    """`wallet_lock` as one statement built once (the charge's first statement under the
    lock), reading only what a charge needs."""
    for_update = " FOR UPDATE" if connection.features.has_select_for_update else ""
    sql = (
        "SELECT recharge_nano, bonus_nano, arrears_nano, auto_recharge_below_nano,"  # noqa: S608
        f" alert_below_nano FROM billing_wallet WHERE account_id = %s{for_update}"
    )
    with writes.cursor() as cursor:
        cursor.execute(sql, [account.pk])
        row = cursor.fetchone()
    if row is None:
        return wallet_lock(account)  # made before wallets existed: created on first use
    return Wallet(
        account_id=account.pk,
        recharge_nano=row[0],
        bonus_nano=row[1],
        arrears_nano=row[2],
        auto_recharge_below_nano=row[3],
        alert_below_nano=row[4],
    )


def _result_from_entry(entry: LedgerEntry) -> ChargeResult:
    data = entry.metadata
    return ChargeResult(
        request_id=entry.request_id,
        model=entry.model,
        input_tokens=entry.input_tokens,
        output_tokens=entry.output_tokens,
        packs=[
            PackUse(line.pack_id, line.input_tokens, line.output_tokens)
            for line in entry.consumptions.order_by("pk")
        ],
        priced_input_tokens=data.get("priced_input_tokens", 0),
        priced_output_tokens=data.get("priced_output_tokens", 0),
        input_price_nano=data.get("input_price_nano", 0),
        output_price_nano=data.get("output_price_nano", 0),
        fee_nano=entry.fee_nano,
        recharge_nano=-entry.recharge_delta_nano,
        bonus_nano=-entry.bonus_delta_nano,
        arrears_nano=entry.arrears_delta_nano,
        replayed=True,
    )


def charge_usage(
    *,
    account: Account,
    model: str,
    input_tokens: int,
    output_tokens: int,
    request_id: str,
    project=None,
    at: datetime | None = None,
    also=None,
) -> ChargeResult:
    """Charge one request: packs first, then the fee split proportionally, arrears when short.

    Called by the gateway inside its settlement transaction (without a savepoint: an error
    here fails the settlement, which rolls back whole). Idempotent on `request_id`: a replay
    returns the original breakdown and changes nothing.

    Short on the account's hot rows: what needs no lock (the price, the replay check, the
    candidate packs) is read first; then the wallet is locked (and the packs, if any), the
    amounts computed, and every write made in one round trip (`billing.writes`) right
    before the caller commits. `also(result)` may return more writes for that round trip
    (the gateway's usage record and roll-ups); they run on every path, replays included.
    """
    if input_tokens < 0 or output_tokens < 0:
        raise ServiceError(_("Token counts cannot be negative."))
    if not request_id or len(request_id) > 64:
        raise ServiceError(_("A request id of 1 to 64 characters is required."))
    at = at or timezone.now()
    price = _price_in_force(model, account.currency, at)
    if price is None:
        raise UnknownModel(_("Unknown model: %(model)s.") % {"model": model})
    with transaction.atomic(savepoint=False):
        if _charged_entry_id(account, request_id) is not None:
            result = _replay(account, request_id)
            if also is not None:
                writes.run(also(result))
            return result
        # Free models cost nothing and consume no pack.
        wants_packs = not price.is_free and (input_tokens or output_tokens)
        candidates = _pack_candidates(account, model, at) if wants_packs else []
        # --- from here on the account's rows are locked until the caller commits
        wallet = _lock_wallet_balances(account)
        uses: list[PackUse] = []
        left_in, left_out = input_tokens, output_tokens
        for pack_id, remaining in _lock_packs(candidates, model, at) if candidates else ():
            take_in = min(left_in, remaining)
            take_out = min(left_out, remaining - take_in)
            if not take_in and not take_out:
                continue
            uses.append(PackUse(pack_id, take_in, take_out))
            left_in -= take_in
            left_out -= take_out
            if not left_in and not left_out:
                break
        fee = (
            0
            if price.is_free
            else price_tokens(input_tokens=left_in, output_tokens=left_out, price=price)
        )
        available = wallet.recharge_nano + wallet.bonus_nano
        if fee <= available:
            recharge_part, bonus_part = split_fee(fee, wallet.recharge_nano, wallet.bonus_nano)
            arrears = 0
        else:
            recharge_part, bonus_part = wallet.recharge_nano, wallet.bonus_nano
            arrears = fee - available
        result = ChargeResult(
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
        extra = also(result) if also is not None else []
        if not uses and fee == 0:
            # Nothing changed: no ledger entry for a free request.
            if extra:
                writes.run(extra)
            return result
        entry = LedgerEntry(
            account=account,
            kind=LedgerEntry.Kind.CHARGE,
            recharge_delta_nano=-recharge_part,
            bonus_delta_nano=-bonus_part,
            arrears_delta_nano=arrears,
            fee_nano=fee,
            request_id=request_id,
            project=project,
            model=model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            created_at=at,
            metadata={
                "priced_input_tokens": left_in,
                "priced_output_tokens": left_out,
                "input_price_nano": price.input_per_million_nano,
                "output_price_nano": price.output_per_million_nano,
            },
        )
        # The gate: a concurrent charge of the same request id (it waited for our lock, or
        # we for its) inserts nothing, and then nothing below happens either.
        batch = [writes.insert_write(entry, name="entry", on_conflict="ON CONFLICT DO NOTHING")]
        for index, use in enumerate(uses):
            batch += _pack_use_writes(index, use)
        if fee:
            _after_balance_drop(wallet, recharge_part + bonus_part)
            batch.append(
                writes.Write(
                    "wallet",
                    "UPDATE billing_wallet SET recharge_nano = recharge_nano - %s,"
                    " bonus_nano = bonus_nano - %s, arrears_nano = arrears_nano + %s"
                    " WHERE account_id = %s AND {exists}",
                    [recharge_part, bonus_part, arrears, account.pk],
                    gated=True,
                )
            )
            batch += _month_spend_writes(account=account, project=project, fee=fee, at=at)
        returned = writes.run(batch + extra)
        if returned["entry"] is None:
            if extra:
                # Its writes went in beside a charge that did not: fail the settlement
                # (the usage record's own uniqueness fails it the same way).
                raise IntegrityError(f"request {request_id} was charged concurrently")
            return _replay(account, request_id)
        if fee and returned["account_month"] is None:
            # The time zone changed (and the counters were rebuilt) after this request loaded
            # its account: count it in the month of the zone in force now.
            # Its billing month, as the rebuild and billing_audit reckon it: `at` came before
            # the change, so it may fall in a stated month whose bounds the zone no longer has.
            account.refresh_from_db(fields=["time_zone"])
            month = account_months(account=account).month_of(at)
            returned = writes.run(
                _month_spend_writes(
                    account=account, project=project, fee=fee, at=at, gate=False, month=month
                )
            )
        if fee:
            _month_spend_alerts(account=account, project=project, fee=fee, returned=returned)
            mark_money_moved(account, at)
    return result


def _pack_use_writes(index: int, use: PackUse) -> list:
    taken = use.input_tokens + use.output_tokens
    return [
        writes.Write(
            f"pack_{index}",
            "UPDATE billing_resourcepack SET tokens_remaining = tokens_remaining - %s"
            " WHERE id = %s AND {exists}",
            [taken, use.pack_id],
            gated=True,
        ),
        writes.Write(
            f"consumption_{index}",
            "INSERT INTO billing_packconsumption (entry_id, pack_id, input_tokens, output_tokens)"
            " SELECT {gate_id}, %s, %s, %s WHERE {exists}",
            [use.pack_id, use.input_tokens, use.output_tokens],
            gated=True,
        ),
    ]


def _month_spend_writes(
    *, account: Account, project, fee: int, at: datetime, gate=True, month: date | None = None
) -> list:
    """Month-to-date counters as upserts returning the new total (the wallet lock
    serialises an account's charges, so they never race each other).

    The month is the calendar month of `at` in the account's time zone as this request
    loaded it; the upserts happen only if that is still the account's zone (a zone change
    takes the wallet lock and rebuilds the counters, so it commits before this statement
    starts or waits for this charge to commit). Otherwise they return nothing and the caller
    writes them again in the zone in force (`gate=False`: outside the charge's batch)."""
    day = connection.ops.adapt_datefield_value(month or current_month(account=account, now=at))
    condition = "EXISTS (SELECT 1 FROM console_account WHERE id = %s AND time_zone = %s)"
    if gate:
        condition = "{exists} AND " + condition
    same_zone = [account.pk, account.time_zone]
    batch = [
        writes.Write(
            "account_month",
            "INSERT INTO billing_accountmonthspend (account_id, month, spent_nano)"
            f" SELECT %s, %s, %s WHERE {condition} ON CONFLICT (account_id, month)"
            " DO UPDATE SET spent_nano = billing_accountmonthspend.spent_nano"
            " + EXCLUDED.spent_nano",
            [account.pk, day, fee, *same_zone],
            returning="spent_nano",
            gated=gate,
        )
    ]
    if project is not None:
        batch.append(
            writes.Write(
                "project_month",
                "INSERT INTO billing_projectmonthspend (account_id, project_id, month, spent_nano)"
                f" SELECT %s, %s, %s, %s WHERE {condition} ON CONFLICT (project_id, month)"
                " DO UPDATE SET spent_nano = billing_projectmonthspend.spent_nano"
                " + EXCLUDED.spent_nano",
                [account.pk, project.pk, day, fee, *same_zone],
                returning="spent_nano",
                gated=gate,
            )
        )
    return batch


def _month_spend_alerts(*, account: Account, project, fee: int, returned: dict) -> None:
    """Schedule the alert check when this charge took month-to-date spend across 50, 80 or
    100% of the account's budget or the project's cap."""
    from alerts.services import schedule_evaluation, spend_crossed_a_level

    crossed = False
    if account.monthly_budget_nano:
        after = returned["account_month"]
        crossed = spend_crossed_a_level(
            before=after - fee, after=after, limit=account.monthly_budget_nano
        )
    if project is not None and project.monthly_cap_nano and not crossed:
        after = returned["project_month"]
        crossed = spend_crossed_a_level(
            before=after - fee, after=after, limit=project.monthly_cap_nano
        )
    if crossed:
        schedule_evaluation(account.pk)


# --- A time-zone change and the month counters ---------------------------------------------


def time_zone_change_check(*, account: Account, time_zone: str, now: datetime | None = None):
    """Refuse a time zone in which it is still a month whose statement is stored: a stated
    month is closed for good, so the new zone's current month must come after it. Moving
    west on the 1st, that is a wait of a few hours (until the 1st begins there too)."""

    months = account_months(account=account, time_zone=time_zone)
    month = current_month(account=Account(time_zone=time_zone), now=now)
    if months.last_stated is None or month > months.last_stated:
        return
    _start, end = month_bounds(time_zone=time_zone, month=months.last_stated)
    raise ServiceError(
        _(
            "The statement for %(month)s has been issued, and in %(zone)s that month has not "
            "ended yet: you can switch to this time zone from %(when)s."
        )
        % {
            "month": f"{months.last_stated:%Y-%m}",
            "zone": time_zone,
            "when": f"{end:%Y-%m-%d %H:%M} ({time_zone})",
        }
    )


def month_spend_rebuild(*, account: Account, now: datetime | None = None) -> int:
    """Recompute the month-to-date counters of every month not yet stated from the ledger,
    in the account's billing months (`account_months`), after its time zone changed.

    The caller holds the wallet lock (every charge takes it before writing a counter), so no
    charge is counted twice or lost. Stated months keep their bounds, so their counters do
    not move. Returns the number of months written."""
    from django.db.models import Sum

    from billing.models import AccountMonthSpend, ProjectMonthSpend

    months = account_months(account=account)
    charges = LedgerEntry.objects.filter(
        account=account, kind=LedgerEntry.Kind.CHARGE, fee_nano__gt=0
    )
    AccountMonthSpend.objects.filter(account=account).exclude(month__in=months.stated).delete()
    ProjectMonthSpend.objects.filter(account=account).exclude(month__in=months.stated).delete()
    first = charges.order_by("created_at").values_list("created_at", flat=True).first()
    if first is None:
        return 0
    latest = charges.order_by("-created_at").values_list("created_at", flat=True).first()
    month = months.month_of(first)
    last = max(months.month_of(latest), months.month_of(now or timezone.now()))
    written = 0
    while month <= last:
        if month not in months.stated:
            start, end = months.bounds(month)
            per_project = dict(
                charges.filter(created_at__gte=start, created_at__lt=end)
                .values("project_id")
                .annotate(total=Sum("fee_nano"))
                .order_by()
                .values_list("project_id", "total")
            )
            if per_project:
                AccountMonthSpend.objects.create(
                    account=account, month=month, spent_nano=sum(per_project.values())
                )
                ProjectMonthSpend.objects.bulk_create(
                    ProjectMonthSpend(
                        account=account, project_id=project_id, month=month, spent_nano=total
                    )
                    for project_id, total in per_project.items()
                    if project_id is not None
                )
                written += 1
        month = next_month(month)
    return written
