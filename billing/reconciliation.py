"""`billing_audit`: recompute every account from its ledger and compare.

Checks, per account: the wallet's recharge, bonus and arrears equal the sums of the ledger's
deltas; each pack's remaining tokens equal its total less its consumption and what expiry
forfeited; the month-to-date counters equal the fees charged in each month (in the account's
time zone), per account and per project; coding plan purchases and refunds agree with how
they were paid (from the balance, or by a card payment that exists and paid nothing else).
"""

from collections import defaultdict
from dataclasses import dataclass

from django.db.models import Q, Sum

from billing.models import (
    AccountMonthSpend,
    LedgerEntry,
    PackConsumption,
    Payment,
    ProjectMonthSpend,
    ResourcePack,
    Wallet,
)
from billing.selectors import account_months
from console.models import Account


@dataclass(frozen=True)
class Mismatch:
    account_id: int
    what: str
    expected: int = 0
    actual: int = 0
    # For a problem that is not two amounts disagreeing (a payment that does not exist).
    note: str = ""

    def __str__(self) -> str:
        if self.note:
            return f"account {self.account_id}: {self.what}: {self.note}"
        return (
            f"account {self.account_id}: {self.what}: ledger says {self.expected}, "
            f"stored {self.actual} (difference {self.actual - self.expected})"
        )


def audit_account(account: Account) -> list[Mismatch]:
    problems = []
    sums = LedgerEntry.objects.filter(account=account).aggregate(
        recharge=Sum("recharge_delta_nano"),
        bonus=Sum("bonus_delta_nano"),
        arrears=Sum("arrears_delta_nano"),
    )
    wallet = Wallet.objects.filter(account=account).first()
    stored = {
        "recharge": wallet.recharge_nano if wallet else 0,
        "bonus": wallet.bonus_nano if wallet else 0,
        "arrears": wallet.arrears_nano if wallet else 0,
    }
    for name in ("recharge", "bonus", "arrears"):
        expected = sums[name] or 0
        if expected != stored[name]:
            problems.append(Mismatch(account.pk, f"{name} balance", expected, stored[name]))

    consumed = defaultdict(int)
    for pack_id, used_in, used_out in PackConsumption.objects.filter(
        pack__account=account
    ).values_list("pack_id", "input_tokens", "output_tokens"):
        consumed[pack_id] += used_in + used_out
    forfeited = defaultdict(int)
    for metadata in LedgerEntry.objects.filter(
        account=account, kind=LedgerEntry.Kind.PACK_EXPIRY
    ).values_list("metadata", flat=True):
        forfeited[metadata["pack"]] += metadata["tokens_forfeited"]
    for pack in ResourcePack.objects.filter(account=account):
        expected = pack.tokens_total - consumed[pack.pk] - forfeited[pack.pk]
        if expected != pack.tokens_remaining:
            problems.append(
                Mismatch(account.pk, f"pack {pack.pk} tokens", expected, pack.tokens_remaining)
            )

    months = account_months(account=account)
    spent, project_spent = defaultdict(int), defaultdict(int)
    for at, fee, project_id in LedgerEntry.objects.filter(
        account=account, kind=LedgerEntry.Kind.CHARGE, fee_nano__gt=0
    ).values_list("created_at", "fee_nano", "project_id"):
        month = months.month_of(at)
        spent[month] += fee
        if project_id:
            project_spent[(project_id, month)] += fee
    stored_accounts = dict(
        AccountMonthSpend.objects.filter(account=account).values_list("month", "spent_nano")
    )
    for month in set(spent) | set(stored_accounts):
        if spent[month] != stored_accounts.get(month, 0):
            problems.append(
                Mismatch(
                    account.pk,
                    f"spend in {month:%Y-%m}",
                    spent[month],
                    stored_accounts.get(month, 0),
                )
            )
    stored_projects = {
        (project_id, month): spent
        for project_id, month, spent in ProjectMonthSpend.objects.filter(
            account=account
        ).values_list("project_id", "month", "spent_nano")
    }
    for key in set(project_spent) | set(stored_projects):
        if project_spent[key] != stored_projects.get(key, 0):
            problems.append(
                Mismatch(
                    account.pk,
                    f"project {key[0]} spend in {key[1]:%Y-%m}",
                    project_spent[key],
                    stored_projects.get(key, 0),
                )
            )
    return problems + _plan_entries(account)


def _plan_entries(account: Account) -> list[Mismatch]:
    """Plan purchases and refunds agree with how they were paid. From the balance: the fee
    is what the wallet gave (never arrears: a plan is never bought into arrears), and a
    refund gave back what it says. By card: the wallet is untouched, and the purchase names
    a succeeded card payment of this account for its fee, which paid nothing else."""
    problems = []
    purchases = {}
    returned = defaultdict(int)
    for entry in LedgerEntry.objects.filter(
        account=account,
        kind__in=(LedgerEntry.Kind.PLAN_PURCHASE, LedgerEntry.Kind.PLAN_REFUND),
    ).order_by("pk"):
        method = entry.metadata.get("method") or "balance"
        moved = (entry.recharge_delta_nano, entry.bonus_delta_nano, entry.arrears_delta_nano)
        label = f"{entry.kind} {entry.pk}"
        if method not in ("balance", "card"):
            problems.append(Mismatch(account.pk, label, note=f"unknown method {method!r}"))
            continue
        if entry.kind == LedgerEntry.Kind.PLAN_PURCHASE:
            purchases[entry.pk] = (method, entry.fee_nano)
            if method == "balance":
                taken = -(entry.recharge_delta_nano + entry.bonus_delta_nano)
                if entry.fee_nano != taken or entry.arrears_delta_nano:
                    problems.append(Mismatch(account.pk, f"{label} fee", taken, entry.fee_nano))
            else:
                if any(moved):
                    problems.append(
                        Mismatch(account.pk, label, note=f"paid by card but moved {moved}")
                    )
                if entry.fee_nano <= 0:
                    problems.append(Mismatch(account.pk, label, note="paid by card, fee 0"))
                problems += _card_payment(account, entry)
            continue
        purchase = entry.metadata.get("purchase")
        amount = entry.metadata.get("returned_nano")
        if not isinstance(amount, int) or amount <= 0:
            problems.append(Mismatch(account.pk, label, note=f"returned_nano {amount!r}"))
            continue
        returned[purchase] += amount
        if method == "balance":
            given = entry.recharge_delta_nano + entry.bonus_delta_nano - entry.arrears_delta_nano
            if given != amount:
                problems.append(Mismatch(account.pk, f"{label} given back", amount, given))
        elif any(moved):
            problems.append(
                Mismatch(account.pk, label, note=f"paid back to a card but moved {moved}")
            )
        if purchases.get(purchase, (None,))[0] != method:
            problems.append(
                Mismatch(account.pk, label, note=f"names no {method} plan purchase {purchase!r}")
            )
    for purchase, amount in returned.items():
        if purchase in purchases and amount > purchases[purchase][1]:
            problems.append(
                Mismatch(
                    account.pk,
                    f"plan_purchase {purchase} refunds",
                    purchases[purchase][1],
                    amount,
                    note=f"{amount} returned of a fee of {purchases[purchase][1]}",
                )
            )
    return problems


def _card_payment(account: Account, entry: LedgerEntry) -> list[Mismatch]:
    label = f"{entry.kind} {entry.pk}"
    reference = entry.metadata.get("payment")
    if not reference:
        return [Mismatch(account.pk, label, note="paid by card without a payment reference")]
    payment = Payment.objects.filter(reference=reference).first()
    if payment is None or payment.account_id != account.pk:
        return [Mismatch(account.pk, label, note=f"payment {reference} is not this account's")]
    problems = []
    if payment.status != Payment.Status.SUCCEEDED:
        problems.append(
            Mismatch(account.pk, label, note=f"payment {reference} is {payment.status}")
        )
    if payment.amount_nano != entry.fee_nano:
        problems.append(
            Mismatch(
                account.pk,
                f"{label} payment {reference}",
                entry.fee_nano,
                payment.amount_nano,
            )
        )
    # One payment pays for one thing: not two plans, not a plan and a recharge.
    others = (
        LedgerEntry.objects.filter(account=account)
        .filter(
            Q(kind=LedgerEntry.Kind.RECHARGE, reference=reference)
            | Q(kind=LedgerEntry.Kind.PLAN_PURCHASE, metadata__payment=reference)
        )
        .exclude(pk=entry.pk)
    )
    if others.exists():
        problems.append(
            Mismatch(account.pk, label, note=f"payment {reference} paid for another entry too")
        )
    return problems


def audit_all() -> tuple[int, list[Mismatch]]:
    problems, count = [], 0
    for account in Account.objects.order_by("pk").iterator():
        count += 1
        problems += audit_account(account)
    return count, problems
