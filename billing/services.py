"""Writes of money: the wallet, the ledger, resource packs, refunds and the month counters
(the steps of charging one request are `billing.charging`; the money rules themselves are
the pure functions of `billing.charges`).

Every change of a balance or a pack is one immutable ledger entry written in the same
transaction as the change. Locks are taken wallet first, then packs in primary-key order,
in every path, so two paths never deadlock each other. Outside references (a payment
reference, a grant reference, a request id) are unique per account: a replay changes nothing.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Sum
from django.db.transaction import TransactionManagementError
from django.utils import timezone
from django.utils.translation import gettext as _

from billing import writes
from billing.charges import balance_crossed, split_fee
from billing.models import (
    AccountMonthSpend,
    LedgerEntry,
    PackProduct,
    ProjectMonthSpend,
    ResourcePack,
    Wallet,
)
from billing.selectors import (
    account_months,
    current_month,
    month_bounds,
    next_month,
    paid_totals,
    price_for,
)
from billing.signals import balance_alert_threshold
from console.models import Account, AuditEvent, User
from console.money import format_amount
from console.services import ServiceError, account_promote_tier, audit_record

STARTER_PACK_REFERENCE = "starter"


class UnknownModel(ServiceError):
    pass


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


@cache
def _wallet_lock_sql(vendor: str) -> tuple[str, tuple[str, ...]]:
    """`wallet_lock`'s statement, built once: it is the charge's first statement under the
    lock, and the ORM compiling it showed in the settlement's profile. Returns (sql, the
    attribute names of its columns)."""
    fields = Wallet._meta.concrete_fields
    columns = ", ".join(f.column for f in fields)
    key = Wallet._meta.get_field("account").column
    for_update = " FOR UPDATE" if connection.features.has_select_for_update else ""
    sql = f"SELECT {columns} FROM {Wallet._meta.db_table} WHERE {key} = %s{for_update}"  # noqa: S608 (names are ours)
    return sql, tuple(f.attname for f in fields)


def wallet_lock(account: Account) -> Wallet:
    """Lock the account's wallet row: every write of the account's money (and invoice
    requests, which must see the money still) takes it first. Inside a transaction only, as
    the ORM's select_for_update insists: outside one the lock would end with the statement."""
    if not connection.in_atomic_block:
        raise TransactionManagementError("wallet_lock() outside a transaction locks nothing.")
    sql, names = _wallet_lock_sql(connection.vendor)
    with writes.cursor() as cursor:
        cursor.execute(sql, [account.pk])
        row = cursor.fetchone()
        if row is None:
            # Accounts made before wallets existed get theirs on first use.
            Wallet.objects.get_or_create(account=account)
            cursor.execute(sql, [account.pk])
            row = cursor.fetchone()
    return Wallet.from_db(connection.alias, names, row)


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


def auto_recharge_after_drop(wallet: Wallet, spent_nano: int) -> None:
    """Auto-recharge starts after the charge that takes the balance below its threshold
    (on commit: the charge must stand before a payment is tried). `wallet` as locked,
    before the drop."""
    before = wallet.recharge_nano + wallet.bonus_nano
    if balance_crossed(before=before, spent=spent_nano, threshold=wallet.auto_recharge_below_nano):
        # Deferred: billing.tasks loads billing.payments, which imports names from this module
        # (a fault-injection test patches them there), so a top-level import would be a cycle.
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
                balance_alert_threshold.send(Wallet, account_id=account.pk)
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


def balance_purchase_split(*, wallet: Wallet, price_nano: int, refusal: str) -> tuple[int, int]:
    """The first half of paying for something from the balance, on the wallet the caller has
    locked (`wallet_lock`): the price split proportionally between recharge and bonus. Raises
    ServiceError(`refusal`), changing nothing, when the balance cannot pay it: a purchase never
    creates arrears, and resource packs do not pay for purchases."""
    if wallet.recharge_nano + wallet.bonus_nano < price_nano:
        raise ServiceError(refusal)
    return split_fee(price_nano, wallet.recharge_nano, wallet.bonus_nano)


def balance_purchase_record(
    *,
    account: Account,
    wallet: Wallet,
    parts: tuple[int, int],
    kind: str,
    actor: User | None,
    at: datetime,
    reference: str = "",
    model: str = "",
    metadata: dict,
) -> LedgerEntry:
    """The second half: take the parts from the wallet and write the purchase's ledger entry
    (its fee is the price), with the balance alert and auto-recharge a drop may set off."""
    recharge_part, bonus_part = parts
    price = recharge_part + bonus_part
    before = wallet.recharge_nano + wallet.bonus_nano
    if balance_crossed(before=before, spent=price, threshold=wallet.alert_below_nano):
        balance_alert_threshold.send(Wallet, account_id=account.pk)
    auto_recharge_after_drop(wallet, price)
    wallet.recharge_nano -= recharge_part
    wallet.bonus_nano -= bonus_part
    wallet.save(update_fields=["recharge_nano", "bonus_nano"])
    entry = _entry(
        account,
        kind,
        recharge_delta_nano=-recharge_part,
        bonus_delta_nano=-bonus_part,
        fee_nano=price,
        reference=reference,
        model=model,
        actor=actor,
        created_at=at,
        metadata=metadata,
    )
    mark_money_moved(account, at)
    return entry


def card_purchase_record(
    *,
    account: Account,
    payment_reference: str,
    amount_nano: int,
    kind: str,
    actor: User | None,
    at: datetime,
    reference: str,
    metadata: dict,
) -> LedgerEntry:
    """A purchase paid by card (a settled `Payment` of another purpose than a recharge): its
    ledger entry moves nothing in the wallet (the money never entered it), its fee is what
    the card paid, and it names the payment, so statements, receipts, invoices and the audit
    find it."""
    entry = _entry(
        account,
        kind,
        fee_nano=amount_nano,
        reference=reference,
        actor=actor,
        created_at=at,
        metadata={**metadata, "method": "card", "payment": payment_reference},
    )
    mark_money_moved(account, at)
    return entry


def purchase_return(
    *,
    account: Account,
    wallet: Wallet,
    purchase: LedgerEntry,
    amount_nano: int,
    kind: str,
    actor: User | None,
    at: datetime,
    reference: str,
    metadata: dict,
) -> LedgerEntry:
    """Give back `amount_nano` of a purchase (`purchase`, its ledger entry) where it came
    from. Paid from the balance: to recharge and bonus in the proportion the purchase took
    them (the proportional rule's split, arrears repaid first as by any credit). Paid by
    card: to the card, out of band as a recharge's refund is (`refund`), so the entry moves
    nothing in the wallet and names the card payment. The caller holds the wallet's lock and
    decides the amount (at most what the purchase took)."""
    if amount_nano > purchase.fee_nano:
        raise ServiceError(_("A refund cannot exceed what the purchase took."))
    if purchase.metadata.get("method") == "card":
        return _entry(
            account,
            kind,
            reference=reference,
            actor=actor,
            created_at=at,
            metadata={
                "returned_nano": amount_nano,
                "purchase": purchase.pk,
                "method": "card",
                "payment": purchase.metadata["payment"],
                **metadata,
            },
        )
    taken_recharge, taken_bonus = -purchase.recharge_delta_nano, -purchase.bonus_delta_nano
    recharge_part, bonus_part = split_fee(amount_nano, taken_recharge, taken_bonus)
    to_recharge, repaid_recharge = _credit(wallet, recharge_part, to="recharge_nano")
    to_bonus, repaid_bonus = _credit(wallet, bonus_part, to="bonus_nano")
    wallet.save(update_fields=["recharge_nano", "bonus_nano", "arrears_nano"])
    entry = _entry(
        account,
        kind,
        recharge_delta_nano=to_recharge,
        bonus_delta_nano=to_bonus,
        arrears_delta_nano=-(repaid_recharge + repaid_bonus),
        reference=reference,
        actor=actor,
        created_at=at,
        metadata={"returned_nano": amount_nano, "purchase": purchase.pk, **metadata},
    )
    mark_money_moved(account, at)
    return entry


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
        parts = balance_purchase_split(
            wallet=wallet,
            price_nano=price,
            refusal=_("Your balance is too low to buy this pack. Recharge first."),
        )
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
        entry = balance_purchase_record(
            account=account,
            wallet=wallet,
            parts=parts,
            kind=LedgerEntry.Kind.PACK_PURCHASE,
            actor=actor,
            at=now,
            reference=reference,
            model=product.model,
            metadata={"pack": pack.pk, "product": product.pk, "tokens": product.tokens},
        )
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
