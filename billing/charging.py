"""The steps of charging one request, in the order `gateway/settlement.py` composes them:
check the price, find a replay, pick and lock the packs, write the ledger entry, packs,
wallet and month counters in one prepared batch. The money rules themselves are the pure
functions of `billing.charges`; the wallet lock is `billing.services.wallet_lock`, the one
every path takes first."""

from dataclasses import dataclass
from datetime import date, datetime
from functools import cache

from django.db import connection
from django.utils.translation import gettext as _

from billing import writes
from billing.charges import Charge, PackUse
from billing.models import (
    AccountMonthSpend,
    LedgerEntry,
    ModelPrice,
    PackConsumption,
    ProjectMonthSpend,
    ResourcePack,
    Wallet,
)
from billing.selectors import (
    account_months,
    current_month,
    price_for,
)
from billing.services import UnknownModel, mark_money_moved
from console.models import Account
from console.services import ServiceError

# --- Charging one request ---------------------
#
# In the settlement's order: `charge_check` (the arguments and the price), `charge_replayed`
# (a request id charged before), `pack_candidates` (no lock yet), then `wallet_lock` and
# `packs_lock`, `billing.charges.charge_compute` (the money rules), `charge_writes` (run in
# the settlement's one round trip) and `charge_counted` (once that ran).


def charge_check(
    *,
    account: Account,
    model: str,
    input_tokens: int,
    output_tokens: int,
    request_id: str,
    at: datetime,
) -> ModelPrice:
    """Refuse a charge that cannot be made (ServiceError, UnknownModel); otherwise the price
    in force at `at`."""
    if input_tokens < 0 or output_tokens < 0:
        raise ServiceError(_("Token counts cannot be negative."))
    if not request_id or len(request_id) > 64:
        raise ServiceError(_("A request id of 1 to 64 characters is required."))
    price = price_for(model=model, currency=account.currency, at=at)
    if price is None:
        raise UnknownModel(_("Unknown model: %(model)s.") % {"model": model})
    return price


@cache
def _charged_entry_sql() -> str:
    meta = LedgerEntry._meta
    account, request_id = (meta.get_field(name).column for name in ("account", "request_id"))
    return (
        f"SELECT {meta.pk.column} FROM {meta.db_table} WHERE {account} = %s AND {request_id} = %s"  # noqa: S608 (names are ours)
    )


def charge_replayed(*, account: Account, request_id: str) -> Charge | None:
    """The charge of a request id charged before, as the ledger recorded it (None: never
    charged). Read without a lock: the ledger entry's unique request id is what decides."""
    with writes.cursor() as cursor:
        cursor.execute(_charged_entry_sql(), [account.pk, request_id])
        if cursor.fetchone() is None:
            return None
    entry = LedgerEntry.objects.get(account=account, request_id=request_id)
    data = entry.metadata
    return Charge(
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


@cache
def _pack_columns() -> dict[str, str]:
    return {f.name: f.column for f in ResourcePack._meta.concrete_fields}


def pack_candidates(*, account: Account, model: str, at: datetime) -> list[int]:
    """The open packs that may cover this model's tokens, read before the wallet lock (no
    lock: `packs_lock` reads them again under it). A pack granted between this read and
    the lock is used from the next charge on, as if it had been granted just after this
    one."""
    column = _pack_columns()
    sql = (
        f"SELECT {column['id']} FROM {ResourcePack._meta.db_table}"  # noqa: S608 (names are ours)
        f" WHERE {column['account']} = %s AND {column['closed_at']} IS NULL"
        f" AND {column['expires_at']} > %s AND {column['tokens_remaining']} > 0"
        f" AND ({column['model']} = %s OR {column['model']} = '')"
    )
    with writes.cursor() as cursor:
        cursor.execute(sql, [account.pk, connection.ops.adapt_datetimefield_value(at), model])
        return [row[0] for row in cursor.fetchall()]


def packs_lock(pack_ids: list[int], *, model: str, at: datetime) -> list[tuple[int, int]]:
    """Lock the candidate packs (primary-key order, after the wallet) and return (id, tokens
    remaining) in the order they are used: packs for this model before general ones,
    earliest expiry first."""
    if not pack_ids:
        return []
    column = _pack_columns()
    placeholders = ", ".join(["%s"] * len(pack_ids))
    for_update = " FOR UPDATE" if connection.features.has_select_for_update else ""
    sql = (
        f"SELECT {column['id']}, {column['model']}, {column['expires_at']},"  # noqa: S608 (names are ours)
        f" {column['tokens_remaining']} FROM {ResourcePack._meta.db_table}"
        f" WHERE {column['id']} IN ({placeholders}) AND {column['closed_at']} IS NULL"
        f" AND {column['expires_at']} > %s AND {column['tokens_remaining']} > 0"
        f" ORDER BY {column['id']}{for_update}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*pack_ids, connection.ops.adapt_datetimefield_value(at)])
        rows = cursor.fetchall()
    # SQLite hands the expiry back as ISO text, which sorts as the times do.
    rows.sort(key=lambda row: (row[1] != model, row[2], row[0]))
    return [(row[0], row[3]) for row in rows]


def charge_writes(*, account: Account, project, charge: Charge, at: datetime) -> list:
    """The charge's writes (`billing.writes`), for the settlement's one round trip: the
    ledger entry first, as the gate (a concurrent charge of the same request id, which
    waited for our lock or we for its, inserts nothing, and then nothing below happens
    either), the packs it draws, the wallet and the month-to-date counters. None for a
    charge that changes nothing: a free request gets no ledger entry."""
    if charge.changes_nothing:
        return []
    entry = LedgerEntry(
        account=account,
        kind=LedgerEntry.Kind.CHARGE,
        recharge_delta_nano=-charge.recharge_nano,
        bonus_delta_nano=-charge.bonus_nano,
        arrears_delta_nano=charge.arrears_nano,
        fee_nano=charge.fee_nano,
        request_id=charge.request_id,
        project=project,
        model=charge.model,
        input_tokens=charge.input_tokens,
        output_tokens=charge.output_tokens,
        created_at=at,
        metadata={
            "priced_input_tokens": charge.priced_input_tokens,
            "priced_output_tokens": charge.priced_output_tokens,
            "input_price_nano": charge.input_price_nano,
            "output_price_nano": charge.output_price_nano,
        },
    )
    batch = [writes.insert_write(entry, name="entry", on_conflict="ON CONFLICT DO NOTHING")]
    for index, use in enumerate(charge.packs):
        batch += _pack_use_writes(index, use)
    if charge.fee_nano:
        batch.append(_wallet_write(account, charge))
        batch += _month_spend_writes(account=account, project=project, fee=charge.fee_nano, at=at)
    return batch


@dataclass(frozen=True)
class MonthSpend:
    """Month-to-date spend of the account and of the project right after a charge (None:
    not counted, a project-less charge for the project)."""

    account_nano: int | None = None
    project_nano: int | None = None


def charge_counted(
    *, account: Account, project, charge: Charge, at: datetime, returned: dict
) -> MonthSpend | None:
    """After the round trip that ran `charge_writes` (`returned`: what it returned): the
    month-to-date spend after this charge, or None when a concurrent charge of the same
    request id won the gate (so none of this charge's writes happened)."""
    if returned["entry"] is None:
        return None
    if not charge.fee_nano:
        return MonthSpend()
    if returned["account_month"] is None:
        # The time zone changed (and the counters were rebuilt) after this request loaded
        # its account: count it in the month of the zone in force now.
        # Its billing month, as the rebuild and billing_audit reckon it: `at` came before
        # the change, so it may fall in a stated month whose bounds the zone no longer has.
        account.refresh_from_db(fields=["time_zone"])
        month = account_months(account=account).month_of(at)
        returned = writes.run(
            _month_spend_writes(
                account=account,
                project=project,
                fee=charge.fee_nano,
                at=at,
                gate=False,
                month=month,
            )
        )
    mark_money_moved(account, at)
    return MonthSpend(returned["account_month"], returned.get("project_month"))


@cache
def _wallet_update_sql() -> str:
    column = {f.name: f.column for f in Wallet._meta.concrete_fields}
    recharge, bonus, arrears = column["recharge_nano"], column["bonus_nano"], column["arrears_nano"]
    return (
        f"UPDATE {Wallet._meta.db_table} SET {recharge} = {recharge} - %s,"  # noqa: S608 (names are ours)
        f" {bonus} = {bonus} - %s, {arrears} = {arrears} + %s"
        f" WHERE {column['account']} = %s AND {{exists}}"
    )


def _wallet_write(account: Account, charge: Charge) -> writes.Write:
    return writes.Write(
        "wallet",
        _wallet_update_sql(),
        [charge.recharge_nano, charge.bonus_nano, charge.arrears_nano, account.pk],
        gated=True,
    )


@cache
def _pack_use_sql() -> tuple[str, str]:
    pack = _pack_columns()
    remaining = pack["tokens_remaining"]
    consumption = {f.name: f.column for f in PackConsumption._meta.concrete_fields}
    columns = ", ".join(
        consumption[name] for name in ("entry", "pack", "input_tokens", "output_tokens")
    )
    return (
        f"UPDATE {ResourcePack._meta.db_table} SET {remaining} = {remaining} - %s"  # noqa: S608 (names are ours)
        f" WHERE {pack['id']} = %s AND {{exists}}",
        f"INSERT INTO {PackConsumption._meta.db_table} ({columns})"
        " SELECT {gate_id}, %s, %s, %s WHERE {exists}",
    )


def _pack_use_writes(index: int, use: PackUse) -> list:
    pack_sql, consumption_sql = _pack_use_sql()
    return [
        writes.Write(f"pack_{index}", pack_sql, [use.tokens, use.pack_id], gated=True),
        writes.Write(
            f"consumption_{index}",
            consumption_sql,
            [use.pack_id, use.input_tokens, use.output_tokens],
            gated=True,
        ),
    ]


@cache
def _month_spend_sql(*, gate: bool, per_project: bool) -> str:
    """The upsert adding a fee to the account's (or the project's) month counter, only while
    the account's time zone is the one the request loaded (see `_month_spend_writes`)."""
    account = {f.name: f.column for f in Account._meta.concrete_fields}
    condition = (
        f"EXISTS (SELECT 1 FROM {Account._meta.db_table}"  # noqa: S608 (names are ours)
        f" WHERE {account['id']} = %s AND {account['time_zone']} = %s)"
    )
    if gate:
        condition = "{exists} AND " + condition
    model = ProjectMonthSpend if per_project else AccountMonthSpend
    column = {f.name: f.column for f in model._meta.concrete_fields}
    if per_project:
        names, unique = ("account", "project", "month", "spent_nano"), ("project", "month")
    else:
        names, unique = ("account", "month", "spent_nano"), ("account", "month")
    table, spent = model._meta.db_table, column["spent_nano"]
    return (
        f"INSERT INTO {table} ({', '.join(column[name] for name in names)})"
        f" SELECT {', '.join(['%s'] * len(names))} WHERE {condition}"
        f" ON CONFLICT ({', '.join(column[name] for name in unique)})"
        f" DO UPDATE SET {spent} = {table}.{spent} + EXCLUDED.{spent}"
    )


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
    same_zone = [account.pk, account.time_zone]
    batch = [
        writes.Write(
            "account_month",
            _month_spend_sql(gate=gate, per_project=False),
            [account.pk, day, fee, *same_zone],
            returning="spent_nano",
            gated=gate,
        )
    ]
    if project is not None:
        batch.append(
            writes.Write(
                "project_month",
                _month_spend_sql(gate=gate, per_project=True),
                [account.pk, project.pk, day, fee, *same_zone],
                returning="spent_nano",
                gated=gate,
            )
        )
    return batch
