"""Reads of money: month-to-date spend from the counter rows (zero where none exist)."""

import functools
import json
import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, time

from django.db import connection
from django.db.models import BigIntegerField, Count, F, Q, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.utils import timezone

from billing import writes
from billing.charges import price_tokens
from billing.models import (
    AccountMonthSpend,
    Invoice,
    LedgerEntry,
    ModelPrice,
    PackProduct,
    ProjectMonthSpend,
    ResourcePack,
    Statement,
    Wallet,
)
from console.models import Account
from console.money import decimal_string
from keys.models import ApiKey
from projects.models import Project
from projects.selectors import CapUsage, project_list


def current_month(*, account: Account, now: datetime | None = None) -> date:
    """The first day of the calendar month that `now` falls in, in the account's time zone."""
    local = (now or timezone.now()).astimezone(zoneinfo.ZoneInfo(account.time_zone))
    return local.date().replace(day=1)


def next_month(month: date) -> date:
    return date(month.year + (month.month == 12), month.month % 12 + 1, 1)


def previous_month(month: date) -> date:
    return date(month.year - (month.month == 1), (month.month - 2) % 12 + 1, 1)


def month_bounds(*, time_zone: str, month: date) -> tuple[datetime, datetime]:
    """The calendar month's first instant and the next month's, in `time_zone`."""
    zone = zoneinfo.ZoneInfo(time_zone)
    return (
        datetime.combine(month, time.min, tzinfo=zone),
        datetime.combine(next_month(month), time.min, tzinfo=zone),
    )


@dataclass(frozen=True)
class AccountMonths:
    """An account's billing months (docs/decisions.md, "Issue 20: the month of a charge"):
    calendar months in its current time zone, except that a month whose statement is stored
    keeps the bounds it was stated with, and the months beside it start or end there. So a
    time-zone change moves the bounds of months not yet stated (the counters are rebuilt to
    match), never a stated one, and every charge is in exactly one month."""

    time_zone: str
    stated: dict  # {month: (start, end)} of the stored statements

    def bounds(self, month: date) -> tuple[datetime, datetime]:
        if month in self.stated:
            return self.stated[month]
        start, end = month_bounds(time_zone=self.time_zone, month=month)
        before, after = self.stated.get(previous_month(month)), self.stated.get(next_month(month))
        return (before[1] if before else start, after[0] if after else end)

    def month_of(self, moment: datetime) -> date:
        month = current_month(account=Account(time_zone=self.time_zone), now=moment)
        # A stated bound differs from the zone's by less than a day: one step at most.
        start, end = self.bounds(month)
        if moment < start:
            return previous_month(month)
        if moment >= end:
            return next_month(month)
        return month

    @property
    def last_stated(self) -> date | None:
        return max(self.stated, default=None)


def account_months(*, account: Account, time_zone: str | None = None) -> AccountMonths:
    """`account`'s billing months (in `time_zone` instead of its own, to try a change)."""
    stated = {}
    for month, starts_at, ends_at, stated_zone in Statement.objects.filter(
        account=account
    ).values_list("month", "data__starts_at", "data__ends_at", "data__time_zone"):
        if starts_at and ends_at:
            stated[month] = (
                datetime.fromisoformat(starts_at),
                datetime.fromisoformat(ends_at),
            )
        else:  # stored before statements recorded their bounds: the zone's calendar month
            stated[month] = month_bounds(time_zone=stated_zone or account.time_zone, month=month)
    return AccountMonths(time_zone=time_zone or account.time_zone, stated=stated)


def project_month_spend(*, account: Account, month: date | None = None) -> dict[int, int]:
    month = month or current_month(account=account)
    rows = ProjectMonthSpend.objects.filter(account=account, month=month)
    return dict(rows.values_list("project_id", "spent_nano"))


def account_month_spend(*, account: Account, month: date | None = None) -> int:
    month = month or current_month(account=account)
    row = AccountMonthSpend.objects.filter(account=account, month=month).first()
    return row.spent_nano if row else 0


# What a charge and an estimate need of the price row in force.
_PRICE_FIELDS = ("id", "input_per_million_nano", "output_per_million_nano")


@functools.cache
def _price_sql() -> str:
    """`price_for`'s statement, built once: the ORM compiling the same query showed in the
    settlement's profile (admission and the charge both read the price)."""
    column = {f.name: f.column for f in ModelPrice._meta.concrete_fields}
    columns = ", ".join(column[name] for name in _PRICE_FIELDS)
    return (
        f"SELECT {columns} FROM {ModelPrice._meta.db_table}"  # noqa: S608 (names are ours)
        f" WHERE {column['model']} = %s AND {column['currency']} = %s"
        f" AND {column['effective_from']} <= %s"
        f" ORDER BY {column['effective_from']} DESC LIMIT 1"
    )


def price_for(*, model: str, currency: str, at: datetime | None = None) -> ModelPrice | None:
    """The price in force for `model` at `at` (None: the model is unknown): the row's
    amounts, not its `effective_from`. Prepared, like the settlement's own statements."""
    at_value = connection.ops.adapt_datetimefield_value(at or timezone.now())
    with writes.cursor() as cursor:
        cursor.execute(_price_sql(), [model, currency, at_value])
        row = cursor.fetchone()
    if row is None:
        return None
    return ModelPrice(model=model, currency=currency, **dict(zip(_PRICE_FIELDS, row, strict=True)))


def pack_products_on_sale():
    return PackProduct.objects.filter(active=True).order_by("tokens", "pk")


@dataclass(frozen=True)
class Balance:
    currency: str
    recharge_nano: int
    bonus_nano: int
    arrears_nano: int
    packs: list  # open ResourcePacks, soonest expiry first

    @property
    def total_nano(self) -> int:
        return self.recharge_nano + self.bonus_nano


def open_packs(*, account: Account, now: datetime | None = None):
    return (
        ResourcePack.objects.filter(account=account)
        .open(at=now or timezone.now())
        .order_by("expires_at", "pk")
    )


def balance(*, account: Account) -> Balance:
    wallet = Wallet.objects.filter(account=account).first()
    return Balance(
        currency=account.currency,
        recharge_nano=wallet.recharge_nano if wallet else 0,
        bonus_nano=wallet.bonus_nano if wallet else 0,
        arrears_nano=wallet.arrears_nano if wallet else 0,
        packs=list(open_packs(account=account)),
    )


def balance_json(*, account: Account) -> dict:
    """DESIGN.md's `show_balance --json` shape."""
    current = balance(account=account)
    return {
        "currency": current.currency,
        "recharge": decimal_string(current.recharge_nano),
        "bonus": decimal_string(current.bonus_nano),
        "arrears": decimal_string(current.arrears_nano),
        "packs": [
            {
                "id": pack.pk,
                "model": pack.model or None,
                "tokens_remaining": pack.tokens_remaining,
                "expires_at": pack.expires_at.isoformat(),
            }
            for pack in current.packs
        ],
    }


PAGE_SIZE = 50


def ledger_page(
    *,
    account: Account,
    kind: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: tuple[datetime, int] | None = None,
    limit: int = PAGE_SIZE,
):
    """Entries newest first, keyset-paginated on (created_at, id): no OFFSET, so page 1,000
    costs what page 1 does. Returns (entries, next cursor or None)."""
    entries = LedgerEntry.objects.filter(account=account)
    if kind:
        entries = entries.filter(kind=kind)
    if since:
        entries = entries.filter(created_at__gte=since)
    if until:
        entries = entries.filter(created_at__lt=until)
    if before:
        at, pk = before
        entries = entries.filter(Q(created_at__lt=at) | Q(created_at=at, id__lt=pk))
    rows = list(
        entries.select_related("project", "actor")
        .prefetch_related("consumptions__pack")
        .order_by("-created_at", "-id")[: limit + 1]
    )
    cursor = (rows[limit - 1].created_at, rows[limit - 1].pk) if len(rows) > limit else None
    return rows[:limit], cursor


# --- Admission helpers (the gateway calls these before forwarding) ---------------------------

# The reference: "the conversion ratio between tokens and character count ... is
# approximately 1:1.6". An estimate only bounds what is reserved; the charge uses the real
# counts the upstream returns.
CHARACTERS_PER_TOKEN_TENTHS = 16
TOKENS_PER_MESSAGE = 4
DEFAULT_OUTPUT_ESTIMATE = 1_024
# An image (or any other non-text part) is billed by its size in pixels, not by the length of
# its URL or base64 data: a fixed allowance per part, above what one image costs at the
# models' largest resolutions.
TOKENS_PER_MEDIA_PART = 2_048
# Body fields that steer the answer but are not read by the model. Every other field (tools,
# tool_choice, response_format, stop, and fields added after this list) is input the
# upstream bills: counted by its JSON.
NOT_INPUT_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "temperature",
        "top_p",
        "stream",
        "stream_options",
        "request_id",
        "user_id",
        "n",
        "do_sample",
        "seed",
        "simulator",
        "thinking",  # a switch ({"type": "enabled"}), not text the model reads
    }
)


@dataclass(frozen=True)
class Estimate:
    model: str
    input_tokens: int
    output_tokens: int
    cost_nano: int  # as if no pack covered anything: an upper bound


def _json_length(value) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def _content_length(content) -> tuple[int, int]:
    """(characters of text, media parts) of a message's content."""
    if isinstance(content, str):
        return len(content), 0
    if not isinstance(content, list):
        return 0, 0
    characters = media = 0
    for part in content:
        if not isinstance(part, dict):
            continue
        if part.get("type", "text") == "text":
            text = part.get("text", "")
            characters += len(text) if isinstance(text, str) else 0
        else:
            media += 1
    return characters, media


def text_tokens(characters: int) -> int:
    """Tokens of a text of `characters` characters, by the reference's ratio (rounded up)."""
    return -(-characters * 10 // CHARACTERS_PER_TOKEN_TENTHS)


def prompt_tokens_of(body: dict) -> int:
    """The input tokens a request body costs, as the upstream bills them: every message's
    text and its other fields (an assistant's tool_calls, a tool's id), every non-text part,
    and every forwarded field the model reads (tools, response_format, ...). The admission
    estimate and the built-in simulator's usage both count with this, so the suite sees a
    body's every field billed and bounded by its estimate."""
    messages = body.get("messages") or []
    characters = media = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        text, parts = _content_length(message.get("content"))
        characters += text
        media += parts
        characters += sum(
            _json_length(value)
            for name, value in message.items()
            if name not in ("role", "content") and value is not None
        )
    characters += sum(
        _json_length(value)
        for name, value in body.items()
        if name not in NOT_INPUT_FIELDS and value is not None
    )
    return (
        text_tokens(characters) + TOKENS_PER_MESSAGE * len(messages) + TOKENS_PER_MEDIA_PART * media
    )


def estimate_request(
    *,
    account: Account,
    model: str,
    messages: list,
    max_tokens: int | None,
    body: dict | None = None,
) -> Estimate | None:
    """Tokens and cost a request may use (None: unknown model). `body` is the whole request
    as forwarded: its fields besides the messages cost input tokens too. The output is one
    choice of at most max_tokens (the gateway refuses `n` above 1)."""
    price = price_for(model=model, currency=account.currency)
    if price is None:
        return None
    # The gateway passes the body it forwards (whose messages these are): counted as it is,
    # with no copy per request.
    input_tokens = prompt_tokens_of(body if body is not None else {"messages": messages})
    output_tokens = max_tokens if max_tokens and max_tokens > 0 else DEFAULT_OUTPUT_ESTIMATE
    cost = (
        0
        if price.is_free
        else price_tokens(input_tokens=input_tokens, output_tokens=output_tokens, price=price)
    )
    return Estimate(model, input_tokens, output_tokens, cost)


@dataclass(frozen=True)
class Admission:
    allowed: bool
    reason: str = ""  # free, packs, balance | arrears, no_balance
    pack_covered: bool = False


@dataclass(frozen=True)
class AdmissionFacts:
    """What admission reads from the database about one account, project and model."""

    has_wallet: bool
    recharge_nano: int
    bonus_nano: int
    arrears_nano: int
    model_pack_tokens: int  # open packs for this model only (settlement draws them first)
    general_pack_tokens: int  # open packs for any model
    account_month_spend_nano: int
    project_month_spend_nano: int

    @property
    def pack_tokens(self) -> int:
        """Open packs that apply to the model."""
        return self.model_pack_tokens + self.general_pack_tokens


@functools.cache
def _admission_sql() -> str:
    quote = connection.ops.quote_name
    packs = quote(ResourcePack._meta.db_table)
    # The packs for this model and the general ones apart, in one pass over the account's
    # open packs: admission holds them per scope, in the order settlement draws them.
    return (
        "SELECT w.recharge_nano, w.bonus_nano, w.arrears_nano, "  # noqa: S608
        "COALESCE(p.model_tokens, 0), COALESCE(p.general_tokens, 0), "
        f"(SELECT spent_nano FROM {quote(AccountMonthSpend._meta.db_table)} "
        "WHERE account_id = %s AND month = %s), "
        f"(SELECT spent_nano FROM {quote(ProjectMonthSpend._meta.db_table)} "
        "WHERE account_id = %s AND project_id = %s AND month = %s) "
        "FROM (SELECT "
        "SUM(CASE WHEN model = '' THEN 0 ELSE tokens_remaining END) AS model_tokens, "
        "SUM(CASE WHEN model = '' THEN tokens_remaining ELSE 0 END) AS general_tokens "
        f"FROM {packs} WHERE account_id = %s "
        "AND closed_at IS NULL AND expires_at > %s AND tokens_remaining > 0 "
        "AND (model = %s OR model = '')) AS p "
        f"LEFT JOIN {quote(Wallet._meta.db_table)} w ON w.account_id = %s"
    )


def admission_facts(*, account: Account, project_id: int, model: str) -> AdmissionFacts:
    """The wallet, the applicable packs and this month's spend (account and project) in one
    round trip: the ORM's four queries were most of admission's time in the gateway's
    profile. The same filters as `ResourcePack.objects.open(...).for_model(...)`,
    account_month_spend and project_month_spend."""
    ops = connection.ops
    now = ops.adapt_datetimefield_value(timezone.now())
    month = ops.adapt_datefield_value(current_month(account=account))
    params = [account.pk, month, account.pk, project_id, month, account.pk, now, model]
    with connection.cursor() as cursor:
        cursor.execute(_admission_sql(), [*params, account.pk])
        row = cursor.fetchone()
    recharge, bonus, arrears, model_packs, general_packs, account_spent, project_spent = row
    return AdmissionFacts(
        has_wallet=recharge is not None,
        recharge_nano=int(recharge or 0),
        bonus_nano=int(bonus or 0),
        arrears_nano=int(arrears or 0),
        model_pack_tokens=int(model_packs or 0),
        general_pack_tokens=int(general_packs or 0),
        account_month_spend_nano=int(account_spent or 0),
        project_month_spend_nano=int(project_spent or 0),
    )


def may_admit(
    *,
    account: Account,
    estimate: Estimate,
    reserved_nano: int = 0,
    facts: AdmissionFacts | None = None,
    pack_tokens: int | None = None,
) -> Admission:
    """DESIGN.md's rule. Free models always pass; a request the applicable packs can cover
    passes; otherwise arrears refuse, and the balance less what is reserved in flight must
    be above zero (the charge may then overshoot into arrears by at most one request).
    `facts`: admission_facts already read (the gateway reads them once for everything).
    `pack_tokens`: the applicable pack tokens this request may count on, which for the
    gateway are those no request in flight holds (its pack hold says how many were free);
    None: every applicable open pack token."""
    if estimate.cost_nano == 0:
        return Admission(True, "free")
    if pack_tokens is None and facts is not None:
        pack_tokens = facts.pack_tokens
    elif pack_tokens is None:
        pack_tokens = (
            open_packs(account=account)
            .for_model(estimate.model)
            .aggregate(total=Sum("tokens_remaining"))["total"]
            or 0
        )
    if pack_tokens >= estimate.input_tokens + estimate.output_tokens:
        return Admission(True, "packs", pack_covered=True)
    if facts is not None:
        if not facts.has_wallet or facts.arrears_nano > 0:
            return Admission(False, "arrears")
        balance_nano = facts.recharge_nano + facts.bonus_nano
    else:
        wallet = Wallet.objects.filter(account=account).first()
        if wallet is None or wallet.arrears_nano > 0:
            return Admission(False, "arrears")
        balance_nano = wallet.recharge_nano + wallet.bonus_nano
    if balance_nano - reserved_nano <= 0:
        return Admission(False, "no_balance")
    return Admission(True, "balance")


# --- Paid, refunded, invoiced ---------------------------------------------------------------


@dataclass(frozen=True)
class PaidTotals:
    paid_nano: int  # every paid recharge (including what went to repay arrears)
    refunded_nano: int
    invoiced_nano: int  # invoices less their reversals
    # Coding plans paid by card, less what staff paid back to the card: money paid to us
    # outside the wallet. Plans paid from the balance are not here: their money is in
    # `paid_nano` already, as the recharges that paid them.
    card_plans_nano: int = 0

    @property
    def net_paid_nano(self) -> int:
        """Paid recharges less refunds: what promotes a tier (a plan bought by card is not a
        recharge and promotes nothing)."""
        return self.paid_nano - self.refunded_nano

    @property
    def invoiceable_nano(self) -> int:
        """DESIGN.md's paid recharges − refunds − already invoiced, plus plans paid by card."""
        return max(self.net_paid_nano + self.card_plans_nano - self.invoiced_nano, 0)

    @property
    def uninvoiced_recharges_nano(self) -> int:
        """What a refund of recharges may give back at most, before the recharge balance's
        own bound. An invoice does not say which money it covers, so every invoice counts
        against the recharges: buying a plan by card never makes recharge money that was
        invoiced refundable (that money is not in the recharge balance either)."""
        return max(self.net_paid_nano - self.invoiced_nano, 0)


def paid_totals(*, account: Account) -> PaidTotals:
    """One pass over the account's money-in entries (the ledger's account index)."""
    card = Q(metadata__method="card")
    sums = LedgerEntry.objects.filter(
        account=account,
        kind__in=(
            LedgerEntry.Kind.RECHARGE,
            LedgerEntry.Kind.REFUND,
            LedgerEntry.Kind.PLAN_PURCHASE,
            LedgerEntry.Kind.PLAN_REFUND,
        ),
    ).aggregate(
        # A recharge's paid amount is what it credited plus the arrears it repaid.
        paid=Sum(
            F("recharge_delta_nano") - F("arrears_delta_nano"),
            filter=Q(kind=LedgerEntry.Kind.RECHARGE),
        ),
        refunded=Sum("recharge_delta_nano", filter=Q(kind=LedgerEntry.Kind.REFUND)),
        # A card-paid plan moves nothing in the wallet: its fee is what the card paid, and a
        # refund of it records what was paid back in its metadata.
        card_plans=Sum("fee_nano", filter=Q(kind=LedgerEntry.Kind.PLAN_PURCHASE) & card),
        card_plan_refunds=Sum(
            Cast(KT("metadata__returned_nano"), BigIntegerField()),
            filter=Q(kind=LedgerEntry.Kind.PLAN_REFUND) & card,
        ),
    )
    invoiced = (
        Invoice.objects.filter(account=account).aggregate(total=Sum("amount_nano"))["total"] or 0
    )
    return PaidTotals(
        paid_nano=sums["paid"] or 0,
        refunded_nano=-(sums["refunded"] or 0),
        invoiced_nano=invoiced,
        card_plans_nano=(sums["card_plans"] or 0) - (sums["card_plan_refunds"] or 0),
    )


def refundable_nano(*, account: Account) -> int:
    """DESIGN.md: at most min(recharge balance, paid − refunded − invoiced)."""
    wallet = Wallet.objects.filter(account=account).first()
    recharge_balance = wallet.recharge_nano if wallet else 0
    totals = paid_totals(account=account)
    return max(min(recharge_balance, totals.uninvoiced_recharges_nano), 0)


# --- The project pages: spend against caps, beside what projects and keys hold ---------------


@dataclass(frozen=True)
class ProjectRow:
    project: Project
    active_keys: int
    usage: CapUsage


def project_rows(*, account: Account, include_archived: bool = False) -> list[ProjectRow]:
    """The project list: each project with its active key count and month-to-date spend."""
    now = timezone.now()
    projects = project_list(account=account, include_archived=include_archived).annotate(
        active_keys=Count("api_keys", filter=ApiKey.usable_q(now, prefix="api_keys__"))
    )
    spend = project_month_spend(account=account)
    return [
        ProjectRow(
            project=project,
            active_keys=project.active_keys,
            usage=CapUsage(spend.get(project.pk, 0), project.monthly_cap_nano, project.cap_mode),
        )
        for project in projects
    ]


def project_usage(*, project: Project) -> CapUsage:
    spend = project_month_spend(account=project.account).get(project.pk, 0)
    return CapUsage(spend, project.monthly_cap_nano, project.cap_mode)


def account_budget_usage(*, account: Account) -> CapUsage:
    return CapUsage(
        account_month_spend(account=account), account.monthly_budget_nano, account.budget_mode
    )
