"""The GLM Coding Plan's catalogue (issue 22): the plans, their prices and limits, and the
models they cover. Prices and limits are effective-dated rows, like model prices: a change is
a new row with a later date, so what a subscriber bought at, and the limits in force at any
moment, can always be read back. Subscriptions are built on this in later steps.
"""

from django.db import models
from django.db.models.functions import Lower
from django.utils.translation import gettext_lazy as _


class Period(models.TextChoices):
    MONTH = "month", _("Monthly")
    QUARTER = "quarter", _("Quarterly")
    YEAR = "year", _("Yearly")


# How many calendar months each period buys.
PERIOD_MONTHS = {Period.MONTH: 1, Period.QUARTER: 3, Period.YEAR: 12}


class Plan(models.Model):
    """Lite, Pro, Max. `rank` orders them: a move to a higher rank is an upgrade."""

    code = models.SlugField(_("code"), max_length=16, unique=True)
    name = models.CharField(_("name"), max_length=32)
    rank = models.PositiveSmallIntegerField(_("rank"), unique=True)
    coding_models = models.ManyToManyField(
        "CodingModel",
        related_name="plans",
        blank=True,
        verbose_name=_("models"),
        help_text=_("The models this plan's requests may use."),
    )

    class Meta:
        ordering = ["rank"]
        verbose_name = _("coding plan")
        verbose_name_plural = _("coding plans")

    def __str__(self) -> str:
        return self.name


class PlanPrice(models.Model):
    """What one period of a plan costs new buyers, in nano of `currency`, from
    `effective_from` on. A subscriber renews at the price they bought at (grandfathered)."""

    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="prices")
    period = models.CharField(_("period"), max_length=8, choices=Period.choices)
    currency = models.CharField(_("currency"), max_length=3)
    amount_nano = models.BigIntegerField(_("price (nano)"))
    effective_from = models.DateTimeField(_("effective from"))

    class Meta:
        verbose_name = _("plan price")
        verbose_name_plural = _("plan prices")
        constraints = [
            models.UniqueConstraint(
                fields=["plan", "period", "currency", "effective_from"], name="plan_price_unique"
            ),
            models.CheckConstraint(
                condition=models.Q(amount_nano__gt=0), name="plan_price_positive"
            ),
        ]
        indexes = [
            # plan_price(plan, period, currency, at): the latest row effective at a time.
            models.Index(
                fields=["plan", "period", "currency", "-effective_from"],
                name="plan_price_lookup_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.plan} {self.period} {self.currency} from {self.effective_from:%Y-%m-%d}"


class PlanLimits(models.Model):
    """A plan's quotas and concurrency from `effective_from` on. Prompts are counted per
    rolling 5 hours, per rolling week and per subscription month; MCP tool calls per
    subscription month. A request that continues a turn (its last message holds a tool
    result) counts 1/`continuation_divisor` of a prompt."""

    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="limits")
    prompts_5h = models.PositiveIntegerField(_("prompts per 5 hours"))
    prompts_week = models.PositiveIntegerField(_("prompts per week"))
    prompts_month = models.PositiveIntegerField(_("prompts per subscription month"))
    mcp_calls_month = models.PositiveIntegerField(_("MCP tool calls per subscription month"))
    concurrency = models.PositiveSmallIntegerField(_("concurrent requests"))
    continuation_divisor = models.PositiveSmallIntegerField(
        _("a continuing request counts 1/N of a prompt"), default=15
    )
    daily_new_subscriptions = models.PositiveIntegerField(
        _("new subscriptions per day"),
        null=True,
        blank=True,
        help_text=_("Empty: no limit. Renewals never count."),
    )
    effective_from = models.DateTimeField(_("effective from"))

    class Meta:
        verbose_name = _("plan limits")
        verbose_name_plural = _("plan limits")
        constraints = [
            models.UniqueConstraint(fields=["plan", "effective_from"], name="plan_limits_unique"),
            models.CheckConstraint(
                condition=models.Q(prompts_5h__gt=0)
                & models.Q(prompts_week__gt=0)
                & models.Q(prompts_month__gt=0)
                & models.Q(concurrency__gt=0)
                & models.Q(continuation_divisor__gt=0),
                name="plan_limits_positive",
            ),
        ]
        indexes = [
            models.Index(fields=["plan", "-effective_from"], name="plan_limits_lookup_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.plan} limits from {self.effective_from:%Y-%m-%d}"


def model_name(name: str | None) -> str:
    """A model's name as stored and compared: trimmed, lower-case (`GLM-4.7` is `glm-4.7`)."""
    return (name or "").strip().lower()


class CodingModel(models.Model):
    """A model the coding endpoint serves, and how many prompts one of its requests uses
    (`weight_milli` thousandths: GLM-5 counts 3). Names are stored lower-case; requests
    match them case-insensitively."""

    model = models.CharField(_("model"), max_length=64, unique=True)
    weight_milli = models.PositiveIntegerField(
        _("prompts per request (thousandths)"),
        default=1000,
        help_text=_("1000 counts one prompt per request; 3000 counts three."),
    )

    class Meta:
        ordering = ["model"]
        verbose_name = _("coding model")
        verbose_name_plural = _("coding models")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(weight_milli__gt=0), name="coding_model_weight"
            ),
            models.CheckConstraint(
                condition=models.Q(model=Lower("model")),
                name="coding_model_lower_case",
            ),
        ]

    def __str__(self) -> str:
        return self.model

    def save(self, *args, **kwargs):
        self.model = model_name(self.model)
        super().save(*args, **kwargs)


class Subscription(models.Model):
    """An account's coding plan: at most one not ended per account. `price_nano` is what the
    account pays per period, locked in at its first purchase (renewals keep it)."""

    account = models.ForeignKey(
        "console.Account", on_delete=models.PROTECT, related_name="subscriptions"
    )
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    period = models.CharField(_("period"), max_length=8, choices=Period.choices)
    currency = models.CharField(_("currency"), max_length=3)
    price_nano = models.BigIntegerField(_("price per period (nano)"))
    auto_renew = models.BooleanField(_("renews automatically"), default=True)
    started_at = models.DateTimeField(_("started"))
    # The paid period in force: requests admitted in [period_start, period_end) use it.
    period_start = models.DateTimeField(_("period starts"))
    period_end = models.DateTimeField(_("period ends"))
    ended_at = models.DateTimeField(_("ended"), null=True, blank=True)
    end_reason = models.CharField(_("why it ended"), max_length=32, blank=True)
    # A downgrade the subscriber scheduled: the renewal at `period_end` moves to this plan
    # and period, at its price of that day (plans.services.plan_schedule_change).
    next_plan = models.ForeignKey(
        Plan,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("changes to plan at renewal"),
    )
    next_period = models.CharField(
        _("changes to period at renewal"), max_length=8, choices=Period.choices, blank=True
    )

    class Meta:
        verbose_name = _("subscription")
        verbose_name_plural = _("subscriptions")
        constraints = [
            models.UniqueConstraint(
                fields=["account"],
                condition=models.Q(ended_at__isnull=True),
                name="one_plan_per_account",
            ),
            models.CheckConstraint(
                condition=models.Q(period_end__gt=models.F("period_start")),
                name="subscription_period_forward",
            ),
            # A scheduled change names both its plan and its period, or neither.
            models.CheckConstraint(
                condition=models.Q(next_plan__isnull=True, next_period="")
                | (models.Q(next_plan__isnull=False) & ~models.Q(next_period="")),
                name="subscription_next_change_whole",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.plan} ({self.get_period_display()}) for account {self.account_id}"


class PlanTerm(models.Model):
    """One paid (or granted) stretch of a subscription: what it cost and which ledger entry
    paid it. Usage records will name the term that served them."""

    class Kind(models.TextChoices):
        PURCHASE = "purchase", _("Purchase")
        RENEWAL = "renewal", _("Renewal")
        UPGRADE = "upgrade", _("Upgrade")
        # Given by staff (the back-office), at no charge.
        GRANT = "grant", _("Granted by staff")
        EXTENSION = "extension", _("Extended by staff")
        CHANGE = "change", _("Changed by staff")

    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="terms")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    starts_at = models.DateTimeField(_("starts"))
    ends_at = models.DateTimeField(_("ends"))
    amount_nano = models.BigIntegerField(_("amount (nano)"))
    ledger_entry = models.OneToOneField(
        "billing.LedgerEntry", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(_("created"))

    class Meta:
        verbose_name = _("plan term")
        verbose_name_plural = _("plan terms")
        indexes = [
            # The daily sales limit: new purchases of a plan since a moment.
            models.Index(fields=["plan", "kind", "created_at"], name="plan_term_sales_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.plan} from {self.starts_at:%Y-%m-%d}"


class McpCall(models.Model):
    """One MCP tool call counted against a plan's monthly tool quota (issue 22): the durable
    record the month's window is rebuilt from, and the quota API's per-tool details."""

    account = models.ForeignKey("console.Account", on_delete=models.PROTECT, related_name="+")
    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="+")
    term = models.ForeignKey(PlanTerm, on_delete=models.PROTECT, related_name="+")
    api_key = models.ForeignKey(
        "keys.ApiKey", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    tool = models.CharField(_("tool"), max_length=32)
    created_at = models.DateTimeField(_("time"))

    class Meta:
        verbose_name = _("MCP tool call")
        verbose_name_plural = _("MCP tool calls")
        indexes = [
            models.Index(fields=["subscription", "created_at"], name="mcp_call_month_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.tool} {self.created_at:%Y-%m-%d %H:%M}"
