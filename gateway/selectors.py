"""Reads about calling the API: the models one can call, with their prices, and the Claude
names the Anthropic-compatible endpoint serves as them."""

import fnmatch
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from billing.models import ModelPrice
from gateway.models import SIMULATOR, ModelAlias, UpstreamRoute
from plans.models import model_name


def enabled_models() -> list[str]:
    """The models with an enabled route and a pay-as-you-go price, by name (what GET models
    lists; a coding-plan-only model such as GLM-5-Code is served on the coding endpoint)."""
    priced = ModelPrice.objects.values("model")
    return list(
        UpstreamRoute.objects.filter(enabled=True, model__in=priced)
        .order_by("model")
        .values_list("model", flat=True)
    )


def served_route(requested: str) -> UpstreamRoute | None:
    """The enabled route that serves a requested model name, or None: the model's own (any
    case), else the alias table's model's (ModelAlias: an exact name before a pattern, a
    longer pattern before a shorter)."""
    name = model_name(requested)
    route = UpstreamRoute.objects.filter(model=name, enabled=True).first()
    if route is None:
        target = alias_target(name, ModelAlias.objects.values_list("pattern", "model"))
        if target is not None:
            route = UpstreamRoute.objects.filter(model=target, enabled=True).first()
    return route


def alias_target(name: str, aliases) -> str | None:
    """The model `name` (lower-case) is an alias of, among (pattern, model) pairs."""
    matches = [
        (pattern != name, -len(pattern), pattern, model)
        for pattern, model in aliases
        if pattern == name or ("*" in pattern and fnmatch.fnmatchcase(name, pattern))
    ]
    return min(matches)[3] if matches else None


def model_alias_list() -> list[ModelAlias]:
    """The alias table as staff left it (requested name or pattern → served model), by
    pattern: what the quickstart shows Claude Code users."""
    return list(ModelAlias.objects.order_by("pattern"))


@dataclass(frozen=True)
class ScheduledPrice:
    input_per_million_nano: int
    output_per_million_nano: int
    effective_from: datetime

    @property
    def is_free(self) -> bool:
        return self.input_per_million_nano == 0 and self.output_per_million_nano == 0


@dataclass(frozen=True)
class PriceListRow:
    model: str
    current: ScheduledPrice
    upcoming: ScheduledPrice | None  # the next later-dated price, if staff scheduled one
    is_simulator: bool


def price_list(*, currency: str, at: datetime | None = None) -> list[PriceListRow]:
    """The models one can call at `at` (an enabled route and a price in force in `currency`,
    the same two things the gateway checks), by name, each with its price in force and the
    next scheduled change. A model priced only from a later date is not callable yet, so it
    is not listed."""
    at = at or timezone.now()
    routes = dict(UpstreamRoute.objects.filter(enabled=True).values_list("model", "base_url"))
    # Price history is a few rows per model: one query, grouped here, works on every backend.
    prices = ModelPrice.objects.filter(currency=currency, model__in=routes).order_by(
        "model", "effective_from"
    )
    current: dict[str, ScheduledPrice] = {}
    upcoming: dict[str, ScheduledPrice] = {}
    for price in prices:
        scheduled = ScheduledPrice(
            price.input_per_million_nano, price.output_per_million_nano, price.effective_from
        )
        if price.effective_from <= at:
            current[price.model] = scheduled  # ascending dates: the last one wins
        else:
            upcoming.setdefault(price.model, scheduled)  # ascending dates: the first one

    return [
        PriceListRow(model, current[model], upcoming.get(model), routes[model] == SIMULATOR)
        for model in sorted(current)
    ]
