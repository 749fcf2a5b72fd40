"""`billing_audit`: recompute every account from its ledger and compare.

Checks, per account: the wallet's recharge, bonus and arrears equal the sums of the ledger's
deltas; each pack's remaining tokens equal its total less its consumption and what expiry
forfeited; the month-to-date counters equal the fees charged in each month (in the account's
time zone), per account and per project.
"""

from collections import defaultdict
from dataclasses import dataclass

from django.db.models import Sum

from billing.models import (
    AccountMonthSpend,
    LedgerEntry,
    PackConsumption,
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
    expected: int
    actual: int

    def __str__(self) -> str:
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
    return problems


def audit_all() -> tuple[int, list[Mismatch]]:
    problems, count = [], 0
    for account in Account.objects.order_by("pk").iterator():
        count += 1
        problems += audit_account(account)
    return count, problems
