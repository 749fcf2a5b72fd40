"""Month-to-date spend: one counter row per project and per account per calendar month (in
the account's time zone). The gateway's settlement transaction adds to them; caps, pages and
alerts read them. Until the gateway lands they stay empty, and spend reads as zero."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class ProjectMonthSpend(models.Model):
    account = models.ForeignKey("console.Account", on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey(
        "projects.Project", on_delete=models.CASCADE, related_name="month_spend"
    )
    month = models.DateField(_("month"), help_text=_("The first day of the month."))
    spent_nano = models.BigIntegerField(_("spent (nano)"), default=0)

    class Meta:
        verbose_name = _("project month spend")
        verbose_name_plural = _("project month spend")
        constraints = [
            models.UniqueConstraint(fields=["project", "month"], name="project_month_unique"),
            models.CheckConstraint(condition=models.Q(spent_nano__gte=0), name="project_spend_ge0"),
        ]
        indexes = [
            # The project list: every project's row for the current month of one account.
            models.Index(fields=["account", "month"], name="project_spend_account_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.project} {self.month:%Y-%m}: {self.spent_nano} nano"


class AccountMonthSpend(models.Model):
    account = models.ForeignKey(
        "console.Account", on_delete=models.CASCADE, related_name="month_spend"
    )
    month = models.DateField(_("month"), help_text=_("The first day of the month."))
    spent_nano = models.BigIntegerField(_("spent (nano)"), default=0)

    class Meta:
        verbose_name = _("account month spend")
        verbose_name_plural = _("account month spend")
        constraints = [
            models.UniqueConstraint(fields=["account", "month"], name="account_month_unique"),
            models.CheckConstraint(condition=models.Q(spent_nano__gte=0), name="account_spend_ge0"),
        ]

    def __str__(self) -> str:
        return f"{self.account} {self.month:%Y-%m}: {self.spent_nano} nano"


class ModelPrice(models.Model):
    """Price of a model per 1M tokens, in nano of `currency`, from `effective_from` on.

    A price that has been charged is never edited: a change is a new row with a later date;
    a usage record keeps the prices it was charged at.
    """

    model = models.CharField(_("model"), max_length=64)
    currency = models.CharField(_("currency"), max_length=3)
    input_per_million_nano = models.BigIntegerField(_("input price per 1M tokens (nano)"))
    output_per_million_nano = models.BigIntegerField(_("output price per 1M tokens (nano)"))
    effective_from = models.DateTimeField(_("effective from"))

    class Meta:
        verbose_name = _("model price")
        verbose_name_plural = _("model prices")
        constraints = [
            models.UniqueConstraint(
                fields=["model", "currency", "effective_from"], name="price_unique"
            ),
            models.CheckConstraint(
                condition=models.Q(input_per_million_nano__gte=0)
                & models.Q(output_per_million_nano__gte=0),
                name="price_non_negative",
            ),
        ]
        indexes = [
            # price_for(model, currency, at): the latest row effective at a time.
            models.Index(fields=["model", "currency", "-effective_from"], name="price_lookup_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.model} {self.currency} from {self.effective_from:%Y-%m-%d}"

    @property
    def is_free(self) -> bool:
        return self.input_per_million_nano == 0 and self.output_per_million_nano == 0


class Wallet(models.Model):
    """An account's balances; always equal to the sum of its ledger (billing_audit checks)."""

    account = models.OneToOneField(
        "console.Account", on_delete=models.PROTECT, related_name="wallet", primary_key=True
    )
    recharge_nano = models.BigIntegerField(_("recharge balance (nano)"), default=0)
    bonus_nano = models.BigIntegerField(_("bonus balance (nano)"), default=0)
    arrears_nano = models.BigIntegerField(_("arrears (nano)"), default=0)

    class Meta:
        verbose_name = _("wallet")
        verbose_name_plural = _("wallets")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(recharge_nano__gte=0)
                & models.Q(bonus_nano__gte=0)
                & models.Q(arrears_nano__gte=0),
                name="wallet_non_negative",
            ),
            # Money in arrears is owed only when nothing is left: recharges repay it first.
            models.CheckConstraint(
                condition=models.Q(arrears_nano=0)
                | (models.Q(recharge_nano=0) & models.Q(bonus_nano=0)),
                name="wallet_arrears_only_when_empty",
            ),
        ]

    def __str__(self) -> str:
        return f"wallet of {self.account_id}"


class LedgerEntry(models.Model):
    """One immutable change of money or pack tokens. Deltas are signed nano."""

    class Kind(models.TextChoices):
        RECHARGE = "recharge", _("Recharge")
        BONUS_GRANT = "bonus_grant", _("Bonus grant")
        CHARGE = "charge", _("API usage")
        PACK_PURCHASE = "pack_purchase", _("Resource pack purchase")
        PACK_GRANT = "pack_grant", _("Resource pack grant")
        PACK_EXPIRY = "pack_expiry", _("Resource pack expiry")

    account = models.ForeignKey(
        "console.Account", on_delete=models.PROTECT, related_name="ledger_entries"
    )
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    recharge_delta_nano = models.BigIntegerField(_("recharge change (nano)"), default=0)
    bonus_delta_nano = models.BigIntegerField(_("bonus change (nano)"), default=0)
    arrears_delta_nano = models.BigIntegerField(_("arrears change (nano)"), default=0)
    # For charges: the priced fee (what the recharge and bonus parts and arrears add up to).
    fee_nano = models.BigIntegerField(_("fee (nano)"), default=0)
    reference = models.CharField(_("reference"), max_length=100, blank=True)
    request_id = models.CharField(_("request id"), max_length=64, blank=True)
    project = models.ForeignKey(
        "projects.Project", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    model = models.CharField(_("model"), max_length=64, blank=True)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    actor = models.ForeignKey(
        "console.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(_("time"), db_index=False)

    class Meta:
        verbose_name = _("ledger entry")
        verbose_name_plural = _("ledger entries")
        constraints = [
            # A replayed request id or outside reference changes nothing.
            models.UniqueConstraint(
                fields=["account", "request_id"],
                condition=~models.Q(request_id=""),
                name="ledger_request_unique",
            ),
            models.UniqueConstraint(
                fields=["account", "kind", "reference"],
                condition=~models.Q(reference=""),
                name="ledger_reference_unique",
            ),
            models.CheckConstraint(
                condition=models.Q(fee_nano__gte=0), name="ledger_fee_non_negative"
            ),
        ]
        indexes = [
            # The transactions page: an account's entries, newest first, keyset by (time, id).
            models.Index(fields=["account", "-created_at", "-id"], name="ledger_account_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.account_id} {self.created_at:%Y-%m-%d %H:%M}"


class PackProduct(models.Model):
    """A resource pack people can buy: tokens (optionally of one model) valid for some days."""

    name = models.CharField(_("name"), max_length=100)
    model = models.CharField(
        _("model"), max_length=64, blank=True, help_text=_("Empty: any model.")
    )
    tokens = models.BigIntegerField(_("tokens"))
    validity_days = models.PositiveIntegerField(_("valid for (days)"))
    price_cny_nano = models.BigIntegerField(_("price, CNY (nano)"))
    price_usd_nano = models.BigIntegerField(_("price, USD (nano)"))
    active = models.BooleanField(_("on sale"), default=True)

    class Meta:
        verbose_name = _("resource pack product")
        verbose_name_plural = _("resource pack products")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(tokens__gt=0)
                & models.Q(price_cny_nano__gt=0)
                & models.Q(price_usd_nano__gt=0),
                name="pack_product_positive",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def price_nano(self, currency: str) -> int:
        return {"CNY": self.price_cny_nano, "USD": self.price_usd_nano}[currency]


class ResourcePack(models.Model):
    """Tokens an account holds: bought, granted by staff, or the starter pack."""

    class Source(models.TextChoices):
        STARTER = "starter", _("Starter pack")
        PURCHASE = "purchase", _("Purchase")
        GRANT = "grant", _("Grant")

    account = models.ForeignKey(
        "console.Account", on_delete=models.PROTECT, related_name="resource_packs"
    )
    product = models.ForeignKey(
        PackProduct, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    name = models.CharField(_("name"), max_length=100)
    model = models.CharField(
        _("model"), max_length=64, blank=True, help_text=_("Empty: any model.")
    )
    source = models.CharField(_("source"), max_length=16, choices=Source.choices)
    tokens_total = models.BigIntegerField(_("tokens"))
    tokens_remaining = models.BigIntegerField(_("tokens remaining"))
    created_at = models.DateTimeField(_("created"))
    expires_at = models.DateTimeField(_("expires"))
    # Set by the expiry job (with a ledger record of the tokens forfeited).
    closed_at = models.DateTimeField(_("closed"), null=True, blank=True)

    class Meta:
        verbose_name = _("resource pack")
        verbose_name_plural = _("resource packs")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(tokens_remaining__gte=0)
                & models.Q(tokens_remaining__lte=models.F("tokens_total"))
                & models.Q(tokens_total__gt=0),
                name="pack_tokens_in_range",
            ),
        ]
        indexes = [
            # charge_usage: an account's open packs by expiry.
            models.Index(fields=["account", "closed_at", "expires_at"], name="pack_open_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.tokens_remaining}/{self.tokens_total})"

    @property
    def tokens_used(self) -> int:
        return self.tokens_total - self.tokens_remaining


class PackConsumption(models.Model):
    """The tokens one charge took from one pack (a charge may span packs)."""

    entry = models.ForeignKey(LedgerEntry, on_delete=models.PROTECT, related_name="consumptions")
    pack = models.ForeignKey(ResourcePack, on_delete=models.PROTECT, related_name="consumptions")
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = _("pack consumption")
        verbose_name_plural = _("pack consumptions")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(input_tokens__gte=0) & models.Q(output_tokens__gte=0),
                name="consumption_non_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.input_tokens}+{self.output_tokens} from pack {self.pack_id}"


class UsageRecord(models.Model):
    """One per request that passed authentication, forwarded or refused (refused ones cost
    nothing). Kept indefinitely and without content; unique per account and request id."""

    class Source(models.TextChoices):
        API = "api", _("API")
        CONSOLE = "console", _("Console")

    account = models.ForeignKey("console.Account", on_delete=models.PROTECT, related_name="+")
    project = models.ForeignKey(
        "projects.Project", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    api_key = models.ForeignKey(
        "keys.ApiKey", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    request_id = models.CharField(_("request id"), max_length=64)
    client_request_id = models.CharField(_("client request id"), max_length=128, blank=True)
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.API)
    model = models.CharField(_("model"), max_length=64, blank=True)
    stream = models.BooleanField(default=False)
    status = models.PositiveSmallIntegerField(_("HTTP status"))
    code = models.CharField(_("error code"), max_length=16, blank=True)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    pack_tokens = models.BigIntegerField(default=0)
    input_price_nano = models.BigIntegerField(default=0)
    output_price_nano = models.BigIntegerField(default=0)
    fee_nano = models.BigIntegerField(default=0)
    recharge_nano = models.BigIntegerField(default=0)
    bonus_nano = models.BigIntegerField(default=0)
    arrears_nano = models.BigIntegerField(default=0)
    # True when the upstream reported no usage (a client left mid-stream) and the output
    # tokens were counted from what was delivered.
    estimated = models.BooleanField(default=False)
    latency_ms = models.PositiveIntegerField(default=0)
    first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(_("time"))

    class Meta:
        verbose_name = _("usage record")
        verbose_name_plural = _("usage records")
        constraints = [
            models.UniqueConstraint(fields=["account", "request_id"], name="usage_request_unique"),
        ]
        indexes = [
            # Usage pages and roll-ups: an account's records by time.
            models.Index(fields=["account", "created_at"], name="usage_account_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.model} {self.status}"
