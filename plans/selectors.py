"""Reads of the coding plan's catalogue: the price and limits in force at a moment, the
offers the subscription page shows, and which models a plan covers. And the plan's requests
over time, which the subscription page's chart and the quota API's model usage both read."""

import functools
import zoneinfo
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from django.db import connection
from django.db.models import Count, F, Sum
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone

from billing import writes
from billing.models import Payment
from plans.models import (
    PERIOD_MONTHS,
    CodingModel,
    Period,
    Plan,
    PlanLimits,
    PlanPrice,
    PlanTerm,
    Subscription,
    model_name,
)
from usage.models import UsageRecord


def plan_price(*, plan: Plan, period: str, currency: str, at: datetime | None = None):
    """The price new buyers pay for `period` of `plan` at `at` (None: not sold then).
    A renewal asks for the price at the moment the subscriber first bought (grandfathered)."""
    return (
        PlanPrice.objects.filter(
            plan=plan, period=period, currency=currency, effective_from__lte=at or timezone.now()
        )
        .order_by("-effective_from")
        .first()
    )


def plan_limits(*, plan: Plan, at: datetime | None = None) -> PlanLimits | None:
    """The plan's quotas and concurrency in force at `at`."""
    return (
        PlanLimits.objects.filter(plan=plan, effective_from__lte=at or timezone.now())
        .order_by("-effective_from")
        .first()
    )


@dataclass(frozen=True)
class PeriodOffer:
    period: str
    amount_nano: int
    saving_percent: int  # against paying monthly for as many months, rounded down

    @property
    def label(self) -> str:
        return Period(self.period).label


@dataclass(frozen=True)
class PlanOffer:
    plan: Plan
    limits: PlanLimits | None
    periods: list[PeriodOffer]
    models: list[CodingModel]


def _in_force(queryset, key, at: datetime) -> dict:
    """The latest row effective at `at` for each `key(row)`, from one query."""
    latest = {}
    for row in queryset.filter(effective_from__lte=at).order_by("effective_from"):
        latest[key(row)] = row  # later rows overwrite earlier ones
    return latest


def plan_offers(*, currency: str, at: datetime | None = None) -> list[PlanOffer]:
    """Every plan with its prices in `currency` today, cheapest plan first; a period with no
    price in force is left out (not on sale). Four queries whatever the catalogue holds."""
    at = at or timezone.now()
    prices = _in_force(
        PlanPrice.objects.filter(currency=currency), lambda row: (row.plan_id, row.period), at
    )
    limits = _in_force(PlanLimits.objects.all(), lambda row: row.plan_id, at)
    offers = []
    for plan in Plan.objects.prefetch_related("coding_models").order_by("rank"):
        monthly = prices.get((plan.pk, Period.MONTH))
        periods = []
        for period in Period:
            price = prices.get((plan.pk, period))
            if price is None:
                continue
            saving = 0
            if monthly is not None and period != Period.MONTH:
                full = monthly.amount_nano * PERIOD_MONTHS[period]
                saving = max(0, (full - price.amount_nano) * 100 // full)
            periods.append(PeriodOffer(period, price.amount_nano, saving))
        offers.append(
            PlanOffer(
                plan=plan,
                limits=limits.get(plan.pk),
                periods=periods,
                models=sorted(plan.coding_models.all(), key=lambda m: m.model),
            )
        )
    return offers


def coding_model(name: str) -> CodingModel | None:
    """The coding model called `name`, whatever its case (`GLM-4.7` is `glm-4.7`)."""
    return CodingModel.objects.filter(model=model_name(name)).first()


def coding_model_names() -> list[str]:
    """Every coding model's name, in name order (the charts colour each by its place here,
    so a model keeps its colour whatever else a range holds)."""
    return list(CodingModel.objects.order_by("model").values_list("model", flat=True))


def plan_covers(*, plan: Plan, model: str) -> bool:
    """Whether requests on `plan` may use `model` (any case)."""
    return plan.coding_models.filter(model=model_name(model)).exists()


def plan_payments_pending(*, account):
    """The account's card payments for a plan still awaiting the provider's answer."""
    return (
        Payment.objects.filter(
            account=account, purpose=Payment.Purpose.PLAN, status=Payment.Status.PENDING
        )
        .select_related("payment_method")  # the page names each payment's card
        .order_by("created_at")
    )


@dataclass(frozen=True)
class Renewal:
    """What a subscription's next renewal buys: its plan, period and price (nano)."""

    plan: Plan
    period: str
    price_nano: int
    changes: bool  # a scheduled downgrade takes effect at this renewal


def subscription_renewal(subscription: Subscription) -> Renewal:
    """What the renewal at the end of the paid period will charge. Without a scheduled change,
    the price locked in (grandfathered: it belongs to the plan the subscriber bought). With one,
    the scheduled plan is bought anew: its price for its period and the subscription's currency
    in force on the renewal date (`period_end`), what a new buyer pays that day."""
    if subscription.next_plan_id is not None:
        price = plan_price(
            plan=subscription.next_plan,
            period=subscription.next_period,
            currency=subscription.currency,
            at=subscription.period_end,
        )
        if price is not None:
            return Renewal(
                subscription.next_plan, subscription.next_period, price.amount_nano, changes=True
            )
        # Not expected: scheduling checks the plan is on sale, and price rows are never
        # deleted (a later row only replaces one). Renew as it is rather than for nothing.
    return Renewal(subscription.plan, subscription.period, subscription.price_nano, changes=False)


def subscription_current(*, account):
    """The account's plan that has not ended, or None. Its paid period may have run out
    (`period_end` past) while the renewal job has not yet renewed or ended it."""
    return (
        Subscription.objects.filter(account=account, ended_at__isnull=True)
        .select_related("plan", "next_plan")
        .first()
    )


# The limits' fields admission reads, annotated `limit_<field>` (and `continuation_divisor`).
_ADMISSION_LIMITS = ("prompts_5h", "prompts_week", "prompts_month", "concurrency")
_ADMISSION_FACTS = (
    *(f"limit_{name}" for name in _ADMISSION_LIMITS),
    "continuation_divisor",
    "term_id",
    "model_known",
    "model_weight",
)


@functools.cache
def _admission_sql() -> str:
    """`plan_admission`'s statement, built once from the models' names: the ORM compiling
    its seven subqueries on every plan request made the coding endpoint's admission cost
    more than the wallet's, whose statements are built once too (billing.selectors)."""
    quote = connection.ops.quote_name

    def columns(model, alias: str) -> str:
        return ", ".join(f"{alias}.{quote(f.column)}" for f in model._meta.concrete_fields)

    def column(model, name: str) -> str:
        return quote(model._meta.get_field(name).column)

    def table(model) -> str:
        return quote(model._meta.db_table)

    coding_models = Plan._meta.get_field("coding_models")
    through = coding_models.remote_field.through
    limits = ", ".join(f"l.{column(PlanLimits, name)}" for name in _ADMISSION_LIMITS)
    effective_from = column(PlanLimits, "effective_from")
    plan_id = column(Subscription, "plan")
    model = column(CodingModel, "model")
    # The limits in force are one row, joined on its `effective_from` (unique per plan):
    # PostgreSQL and SQLite both run it, where a LATERAL join would need PostgreSQL.
    return (
        f"SELECT {columns(Subscription, 's')}, {columns(Plan, 'p')}, "  # noqa: S608 (names are ours)
        f"{limits}, l.{column(PlanLimits, 'continuation_divisor')}, "
        f"(SELECT t.{quote(PlanTerm._meta.pk.column)} FROM {table(PlanTerm)} t"
        f" WHERE t.{column(PlanTerm, 'subscription')} = s.{quote(Subscription._meta.pk.column)}"
        f" AND t.{column(PlanTerm, 'starts_at')} <= %s"
        f" ORDER BY t.{column(PlanTerm, 'starts_at')} DESC LIMIT 1), "
        f"EXISTS (SELECT 1 FROM {table(CodingModel)} WHERE {model} = %s), "
        f"(SELECT c.{column(CodingModel, 'weight_milli')} FROM {table(CodingModel)} c"
        f" JOIN {table(through)} pc"
        f" ON pc.{quote(coding_models.m2m_reverse_name())} = c.{quote(CodingModel._meta.pk.column)}"
        f" WHERE c.{model} = %s AND pc.{quote(coding_models.m2m_column_name())} = s.{plan_id}) "
        f"FROM {table(Subscription)} s"
        f" JOIN {table(Plan)} p ON p.{quote(Plan._meta.pk.column)} = s.{plan_id}"
        f" LEFT JOIN {table(PlanLimits)} l ON l.{column(PlanLimits, 'plan')} = s.{plan_id}"
        f" AND l.{effective_from} = (SELECT MAX(m.{effective_from}) FROM {table(PlanLimits)} m"
        f" WHERE m.{column(PlanLimits, 'plan')} = s.{plan_id} AND m.{effective_from} <= %s)"
        f" WHERE s.{column(Subscription, 'account')} = %s"
        f" AND s.{column(Subscription, 'ended_at')} IS NULL"
        f" ORDER BY s.{quote(Subscription._meta.pk.column)} LIMIT 1"
    )


@functools.cache
def _row_converters(vendor: str) -> tuple[tuple, ...]:
    """For each model column `_admission_sql` selects, what the ORM would apply to its raw
    value (SQLite returns datetimes as naive text and booleans as 0/1; PostgreSQL needs
    nothing). Per backend, once: the converters read settings, never the connection's state."""
    converters = []
    for model in (Subscription, Plan):
        for model_field in model._meta.concrete_fields:
            col = model_field.get_col(model._meta.db_table)
            found = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
            converters.append((col, tuple(found)))
    return tuple(converters)


def plan_admission(*, account, model: str, at: datetime):
    """Everything the coding endpoint's admission reads about the account's plan, in one
    prepared query (it runs on every plan request): the subscription that has not ended with
    its plan, its latest term starting by `at` (`term_id`), the plan's limits in force at
    `at` (annotated `limit_<field>`, and `continuation_divisor`), whether `model`
    (normalised) is a coding model at all (`model_known`) and its weight where the plan
    covers it (`model_weight`, None when not). None without a subscription."""
    at_value = connection.ops.adapt_datetimefield_value(at)
    name = model_name(model)
    with writes.cursor() as cursor:
        cursor.execute(_admission_sql(), [at_value, name, name, at_value, account.pk])
        row = cursor.fetchone()
    if row is None:
        return None
    subscription_width = len(Subscription._meta.concrete_fields)
    plan_width = len(Plan._meta.concrete_fields)
    converters = _row_converters(connection.vendor)
    values = []
    for value, (col, found) in zip(row[: len(converters)], converters, strict=True):
        for convert in found:
            value = convert(value, col, connection)
        values.append(value)
    subscription = Subscription.from_db(connection.alias, None, values[:subscription_width])
    subscription.plan = Plan.from_db(
        connection.alias, None, values[subscription_width : subscription_width + plan_width]
    )
    facts = dict(zip(_ADMISSION_FACTS, row[subscription_width + plan_width :], strict=True))
    facts["model_known"] = bool(facts["model_known"])  # SQLite answers EXISTS with 0 or 1
    for attribute, value in facts.items():
        setattr(subscription, attribute, value)
    return subscription


# --- The plan's requests over time ------------------------------------------------------------

HOUR, DAY = "hour", "day"
# The subscription page's ranges: the 5-hour window's span and the week's.
PLAN_USAGE_SPANS = {"5h": timedelta(hours=5), "7d": timedelta(days=7)}


def usage_buckets(*, start: datetime, end: datetime, granularity: str, zone) -> list[datetime]:
    """The start of every bucket from the one holding `start` to the one holding `end`, in
    `zone`, empty ones included. Hours step in absolute time, so a DST change skips no hour
    and invents none (the database truncates a repeated hour to its first occurrence, so the
    second one stays empty) and a half-hour zone's hours start at its local :00; days start
    at each local midnight, whatever their length."""
    start, end = timezone.localtime(start, zone), timezone.localtime(end, zone)
    buckets = []
    if granularity == DAY:
        day = start.date()
        while day <= end.date():
            buckets.append(datetime.combine(day, time(), tzinfo=zone))
            day += timedelta(days=1)
        return buckets
    at = start.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    while at <= end:
        buckets.append(at.astimezone(zone))
        at += timedelta(hours=1)
    return buckets


def usage_truncate(granularity: str, zone, field_name: str = "created_at"):
    """The database expression that puts a row in its bucket of `usage_buckets`."""
    trunc = TruncDay if granularity == DAY else TruncHour
    return trunc(field_name, tzinfo=zone)


@dataclass
class PlanUsageCounts:
    requests: int = 0
    prompts_milli: int = 0  # thousandths of a prompt, as the records count them
    tokens: int = 0

    def add(self, other: "PlanUsageCounts") -> None:
        self.requests += other.requests
        self.prompts_milli += other.prompts_milli
        self.tokens += other.tokens

    @property
    def prompts(self) -> Decimal:
        """Prompts exactly: 3, 0.067, 12.5."""
        return Decimal(self.prompts_milli) / 1000


@dataclass(frozen=True)
class PlanUsage:
    start: datetime
    end: datetime
    granularity: str  # HOUR or DAY
    buckets: list[datetime]  # each bucket's start in the account's time zone
    # model → its counts per bucket (aligned with `buckets`), models in name order
    by_model: dict[str, list[PlanUsageCounts]] = field(default_factory=dict)

    @property
    def per_bucket(self) -> list[PlanUsageCounts]:
        totals = [PlanUsageCounts() for _bucket in self.buckets]
        for series in self.by_model.values():
            for total, counts in zip(totals, series, strict=True):
                total.add(counts)
        return totals

    @property
    def per_model(self) -> list[tuple[str, PlanUsageCounts]]:
        """Each model's totals over the range, the most requested first."""
        rows = []
        for model, series in self.by_model.items():
            total = PlanUsageCounts()
            for counts in series:
                total.add(counts)
            rows.append((model, total))
        return sorted(rows, key=lambda row: (-row[1].requests, row[0]))

    @property
    def total(self) -> PlanUsageCounts:
        total = PlanUsageCounts()
        for counts in self.per_bucket:
            total.add(counts)
        return total

    @property
    def is_empty(self) -> bool:
        return not self.by_model


def plan_usage(*, account, start: datetime, end: datetime, granularity: str = HOUR) -> PlanUsage:
    """The account's plan requests from `start` to `end` (both included) by bucket and model,
    in the account's time zone, zero-filled: the requests that counted prompts (a refusal or
    an upstream failure counts none), the prompts, and the tokens. Every plan the account
    had in the range counts, as the quota API reports them; pay-as-you-go requests never do.
    One grouped query."""
    zone = zoneinfo.ZoneInfo(account.time_zone)
    buckets = usage_buckets(start=start, end=end, granularity=granularity, zone=zone)
    position = {bucket.timestamp(): index for index, bucket in enumerate(buckets)}
    rows = (
        UsageRecord.objects.filter(
            account=account,
            plan_term_id__isnull=False,
            quota_milli__gt=0,
            created_at__gte=start,
            created_at__lte=end,
        )
        .annotate(bucket=usage_truncate(granularity, zone))
        .values("bucket", "model")
        .annotate(
            requests=Count("pk"),
            prompts_milli=Sum("quota_milli"),
            tokens=Sum(F("input_tokens") + F("output_tokens")),
        )
        .order_by("model", "bucket")
    )
    by_model: dict[str, list[PlanUsageCounts]] = {}
    for row in rows:
        index = position.get(row["bucket"].timestamp())
        if index is None:
            # The range filter keeps rows inside the buckets; one the database places where
            # Python does not (a local time a DST change skipped) is left out, not misplaced.
            continue
        series = by_model.setdefault(row["model"], [PlanUsageCounts() for _b in buckets])
        series[index].add(
            PlanUsageCounts(row["requests"], row["prompts_milli"], row["tokens"] or 0)
        )
    return PlanUsage(start, end, granularity, buckets, by_model)


def plan_usage_recent(*, account, span: str, now: datetime | None = None) -> PlanUsage:
    """`plan_usage` by hour over the last `span` (a key of PLAN_USAGE_SPANS): the range of
    the plan's rolling window of that length, so the 5 hours' bars add up to what its window
    counted (to the minute: a window counts per minute bucket)."""
    now = now or timezone.now()
    return plan_usage(account=account, start=now - PLAN_USAGE_SPANS[span], end=now)
