"""Reads of the coding plan's catalogue: the price and limits in force at a moment, the
offers the subscription page shows, and which models a plan covers."""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Exists, OuterRef, Subquery
from django.utils import timezone

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


def plan_covers(*, plan: Plan, model: str) -> bool:
    """Whether requests on `plan` may use `model` (any case)."""
    return plan.coding_models.filter(model=model_name(model)).exists()


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


# The limits' fields admission reads, each as a subquery of the plan's limits in force.
_ADMISSION_LIMITS = ("prompts_5h", "prompts_week", "prompts_month", "concurrency")


def plan_admission(*, account, model: str, at: datetime):
    """Everything the coding endpoint's admission reads about the account's plan, in one
    query (it runs on every plan request): the subscription that has not ended with its plan,
    its latest term, the plan's limits in force at `at` (annotated `limit_<field>`, and
    `continuation_divisor`), whether `model` (normalised) is a coding model at all
    (`model_known`) and its weight where the plan covers it (`model_weight`, None when not).
    None without a subscription."""
    limits = PlanLimits.objects.filter(plan=OuterRef("plan"), effective_from__lte=at).order_by(
        "-effective_from"
    )
    name = model_name(model)
    annotations = {
        f"limit_{field}": Subquery(limits.values(field)[:1]) for field in _ADMISSION_LIMITS
    }
    return (
        Subscription.objects.filter(account=account, ended_at__isnull=True)
        .select_related("plan")
        .annotate(
            **annotations,
            continuation_divisor=Subquery(limits.values("continuation_divisor")[:1]),
            term_id=Subquery(
                PlanTerm.objects.filter(subscription=OuterRef("pk"), starts_at__lte=at)
                .order_by("-starts_at")
                .values("pk")[:1]
            ),
            model_known=Exists(CodingModel.objects.filter(model=name)),
            model_weight=Subquery(
                CodingModel.objects.filter(model=name, plans=OuterRef("plan")).values(
                    "weight_milli"
                )[:1]
            ),
        )
        .first()
    )
