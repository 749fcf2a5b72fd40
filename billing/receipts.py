"""Receipts (收据): one for every paid recharge and every coding plan purchase.

A receipt is numbered from its ledger entry (`RC` + the entry's UTC date + its id), so the
number is unique across both kinds and the same every time it is printed. It says what was
paid and how; it is not a tax invoice (billing/invoices.py).

A plan purchase's receipt reads everything from its ledger entry (billing sits below plans
and does not import them): the plan, the period and the term are in its metadata, written
by the plans app when it records the purchase. Entries written before the term was recorded
there print without its dates.
"""

from dataclasses import dataclass
from datetime import datetime

from billing.models import LedgerEntry, Payment

# The kinds of ledger entry that get a receipt.
RECEIPT_KINDS = (LedgerEntry.Kind.RECHARGE, LedgerEntry.Kind.PLAN_PURCHASE)


def receipt_number(entry: LedgerEntry) -> str:
    return f"RC{entry.created_at:%Y%m%d}{entry.pk:08d}"


def plan_payment_method(entry: LedgerEntry) -> str:
    """How a plan purchase (or a plan refund) was paid: "card" or "balance". Entries from
    before card payment for plans existed carry no method: they were paid from the balance."""
    return entry.metadata.get("method") or "balance"


@dataclass(frozen=True)
class Receipt:
    """A paid recharge, as its receipt shows it."""

    entry: LedgerEntry
    number: str
    paid_nano: int
    bonus_nano: int
    method: str


@dataclass(frozen=True)
class PlanReceipt:
    """A coding plan purchase (a purchase, a renewal or an upgrade), as its receipt shows it.

    Paid by card, `card_nano` is the money paid. Paid from the balance, the recharge part is
    money paid earlier (with the recharges, whose receipts and invoices cover it) and the
    bonus part is gift credit, not money paid."""

    entry: LedgerEntry
    number: str
    plan: str
    plan_name: str
    period: str
    term: str
    from_plan: str
    starts_at: datetime | None
    ends_at: datetime | None
    price_nano: int
    method: str
    card_nano: int
    recharge_nano: int
    bonus_nano: int
    payment_reference: str
    card: str

    @property
    def paid_nano(self) -> int:
        """Money paid for this purchase: by card, or from the recharge balance."""
        return self.card_nano if self.method == "card" else self.recharge_nano


def _recharge_receipt(entry: LedgerEntry) -> Receipt:
    bonus = (
        LedgerEntry.objects.filter(
            account_id=entry.account_id,
            kind=LedgerEntry.Kind.BONUS_GRANT,
            reference=entry.reference,
        )
        .values_list("metadata__granted_nano", flat=True)
        .first()
    )
    return Receipt(
        entry=entry,
        number=receipt_number(entry),
        paid_nano=entry.recharge_delta_nano - entry.arrears_delta_nano,
        bonus_nano=int(bonus or 0),
        method=entry.metadata.get("method", "manual"),
    )


def _moment(text) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _term(metadata: dict) -> str:
    # Entries from before the term's kind was recorded: a renewal said so, an upgrade named
    # the plan it left.
    if metadata.get("term"):
        return metadata["term"]
    if metadata.get("renewal"):
        return "renewal"
    return "upgrade" if metadata.get("from_plan") else "purchase"


def _plan_receipt(entry: LedgerEntry) -> PlanReceipt:
    metadata = entry.metadata
    method = plan_payment_method(entry)
    card, reference = "", ""
    if method == "card":
        reference = metadata.get("payment", "")
        payment = (
            Payment.objects.filter(account_id=entry.account_id, reference=reference)
            .select_related("payment_method")
            .first()
        )
        if payment is not None and payment.payment_method is not None:
            card = str(payment.payment_method)
    return PlanReceipt(
        entry=entry,
        number=receipt_number(entry),
        plan=metadata.get("plan", ""),
        plan_name=metadata.get("plan_name") or metadata.get("plan", "").title(),
        period=metadata.get("period", ""),
        term=_term(metadata),
        from_plan=metadata.get("from_plan", ""),
        starts_at=_moment(metadata.get("starts_at")),
        ends_at=_moment(metadata.get("ends_at")),
        price_nano=entry.fee_nano,
        method=method,
        card_nano=entry.fee_nano if method == "card" else 0,
        recharge_nano=-entry.recharge_delta_nano,
        bonus_nano=-entry.bonus_delta_nano,
        payment_reference=reference,
        card=card,
    )


def receipt_for(*, entry: LedgerEntry) -> Receipt | PlanReceipt:
    """The receipt of a recharge or a plan purchase; any other entry has none."""
    if entry.kind == LedgerEntry.Kind.PLAN_PURCHASE:
        return _plan_receipt(entry)
    if entry.kind == LedgerEntry.Kind.RECHARGE:
        return _recharge_receipt(entry)
    raise ValueError(f"a {entry.kind} ledger entry has no receipt")
