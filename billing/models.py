"""Money's tables: prices, the wallet and its immutable ledger, resource packs, usage
records, month-to-date spend counters, payments and saved cards, promotions, the billing
profile, invoices and statements. The rules that write them live in `services.py` (the
wallet), `payments.py`, `invoices.py` and `statements.py`."""

from django.conf import settings
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
    # The balance below which auto-recharge starts (None: off). A copy of the billing
    # profile's threshold, kept here because every charge already holds this row locked: the
    # charge that crosses it needs no extra query to notice. Written only by
    # `auto_recharge_configure` and `auto_recharge_disable`.
    auto_recharge_below_nano = models.BigIntegerField(
        _("auto-recharge below (nano)"), null=True, blank=True
    )
    # The balance-low alert's threshold (None: off), copied here for the same reason: the
    # charge that crosses it schedules the alert check at no extra query. Written only by
    # `alert_settings_save`.
    alert_below_nano = models.BigIntegerField(_("alert below (nano)"), null=True, blank=True)

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
        REFUND = "refund", _("Refund")
        PLAN_PURCHASE = "plan_purchase", _("Coding plan purchase")
        # A staff refund of a plan's unused share, back to recharge and bonus as it was paid.
        PLAN_REFUND = "plan_refund", _("Coding plan refund")

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


class ResourcePackQuerySet(models.QuerySet):
    """The one spelling of which packs count at a moment. The settlement's and admission's
    raw SQL (billing/charging.py, billing/selectors.py) say the same in SQL, for speed."""

    def unexpired(self, *, at):
        """Packs in force at `at`: not closed by the expiry job and not past their expiry,
        whatever tokens they have left (an empty pack is still "low")."""
        return self.filter(closed_at__isnull=True, expires_at__gt=at)

    def open(self, *, at):
        """Packs that can pay for tokens at `at`: in force, with tokens left."""
        return self.unexpired(at=at).filter(tokens_remaining__gt=0)

    def past_expiry(self, *, at):
        """Packs the expiry job has to close at `at`: expired, not closed yet."""
        return self.filter(closed_at__isnull=True, expires_at__lte=at)

    def for_model(self, model: str):
        """Packs whose tokens `model` may use: those of that model and the general ones."""
        return self.filter(models.Q(model=model) | models.Q(model=""))


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

    objects = ResourcePackQuerySet.as_manager()

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


# --- Payments -------------------------------------------------------------------------------


class Promotion(models.Model):
    """Bonus credit for a recharge of at least `min_amount_nano` (staff-editable).

    The promotion in force when a payment starts is recorded on it, and its bonus is granted
    when the payment succeeds, even if staff changed the promotion meanwhile: the person was
    shown that bonus before paying.
    """

    name = models.CharField(_("name"), max_length=100)
    currency = models.CharField(_("currency"), max_length=3, choices=settings.CURRENCIES)
    min_amount_nano = models.BigIntegerField(_("from a recharge of (nano)"))
    # 500 = 5%: integers, so the bonus is exact.
    bonus_basis_points = models.PositiveIntegerField(
        _("bonus (basis points)"), help_text=_("500 means 5 percent of the recharge.")
    )
    active = models.BooleanField(_("active"), default=True)
    starts_at = models.DateTimeField(_("starts"), null=True, blank=True)
    ends_at = models.DateTimeField(_("ends"), null=True, blank=True)

    class Meta:
        verbose_name = _("promotion")
        verbose_name_plural = _("promotions")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(min_amount_nano__gt=0)
                & models.Q(bonus_basis_points__gt=0)
                & models.Q(bonus_basis_points__lte=10_000),
                name="promotion_in_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def bonus_for(self, amount_nano: int) -> int:
        return amount_nano * self.bonus_basis_points // 10_000


class PaymentMethod(models.Model):
    """A saved card: the provider's token, the brand and the last 4 digits. The card number
    and the security code never reach the database (or a log: the views that take them mark
    them sensitive)."""

    account = models.ForeignKey(
        "console.Account", on_delete=models.PROTECT, related_name="payment_methods"
    )
    provider = models.CharField(_("provider"), max_length=16)
    token = models.CharField(_("provider token"), max_length=64, unique=True)
    brand = models.CharField(_("brand"), max_length=32)
    last4 = models.CharField(_("last 4 digits"), max_length=4)
    exp_month = models.PositiveSmallIntegerField(_("expiry month"))
    exp_year = models.PositiveSmallIntegerField(_("expiry year"))
    is_default = models.BooleanField(_("default"), default=False)
    created_by = models.ForeignKey(
        "console.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(_("added"))
    removed_at = models.DateTimeField(_("removed"), null=True, blank=True)

    class Meta:
        verbose_name = _("payment method")
        verbose_name_plural = _("payment methods")
        constraints = [
            # One default card per account, among the cards not removed.
            models.UniqueConstraint(
                fields=["account"],
                condition=models.Q(is_default=True, removed_at__isnull=True),
                name="payment_method_one_default",
            ),
        ]
        indexes = [
            # The payment methods page and the default-card lookup: an account's live cards.
            models.Index(fields=["account", "removed_at"], name="payment_method_account_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.brand} •••• {self.last4}"


class Payment(models.Model):
    """One recharge through a provider (a card, a bank transfer) or recorded by staff, or a
    card payment for something an app above billing sells (a coding plan: `purpose`).

    The ledger is the truth about money; this row is the conversation with the provider.
    It is credited once: settlement locks this row and moves it out of `pending` in the
    same transaction as the ledger entry, and the entry's reference (this row's reference)
    is unique, so a confirmation that arrives twice changes nothing the second time.
    """

    class Method(models.TextChoices):
        CARD = "card", _("Card")
        BANK_TRANSFER = "bank_transfer", _("Bank transfer")
        MANUAL = "manual", _("Staff top-up")

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SUCCEEDED = "succeeded", _("Succeeded")
        DECLINED = "declined", _("Declined")
        CANCELLED = "cancelled", _("Cancelled")

    class Purpose(models.TextChoices):
        RECHARGE = "recharge", _("Recharge")
        # Paid for a plan, not into the wallet: no promotion bonus, no tier promotion.
        PLAN = "plan", _("Coding plan")

    account = models.ForeignKey("console.Account", on_delete=models.PROTECT, related_name="+")
    purpose = models.CharField(
        _("for"), max_length=16, choices=Purpose.choices, default=Purpose.RECHARGE
    )
    # What a payment that is not a recharge buys, as the selling app wrote it (billing does
    # not import the apps above it; they read this when the payment settles).
    purchase = models.JSONField(_("purchase"), default=dict, blank=True)
    method = models.CharField(_("method"), max_length=16, choices=Method.choices)
    provider = models.CharField(_("provider"), max_length=16)
    # Ours: the ledger reference, and the code a bank transfer's memo carries.
    reference = models.CharField(_("reference"), max_length=40, unique=True)
    # The provider's id for this payment (empty until it answers).
    provider_reference = models.CharField(_("provider reference"), max_length=100, blank=True)
    amount_nano = models.BigIntegerField(_("amount (nano)"))
    currency = models.CharField(_("currency"), max_length=3)
    bonus_nano = models.BigIntegerField(_("promotion bonus (nano)"), default=0)
    promotion = models.ForeignKey(
        Promotion, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    payment_method = models.ForeignKey(
        PaymentMethod, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # Started by auto-recharge rather than by a person.
    auto = models.BooleanField(_("auto-recharge"), default=False)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.PENDING
    )
    failure_message = models.CharField(_("failure"), max_length=200, blank=True)
    ledger_entry = models.OneToOneField(
        LedgerEntry, on_delete=models.PROTECT, null=True, blank=True, related_name="payment"
    )
    created_by = models.ForeignKey(
        "console.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(_("created"))
    settled_at = models.DateTimeField(_("settled"), null=True, blank=True)

    class Meta:
        verbose_name = _("payment")
        verbose_name_plural = _("payments")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount_nano__gt=0) & models.Q(bonus_nano__gte=0),
                name="payment_amount_positive",
            ),
            # A purchase is paid by card at its price: never a promotion's bonus.
            models.CheckConstraint(
                condition=models.Q(purpose="recharge")
                | models.Q(bonus_nano=0, promotion__isnull=True, method="card"),
                name="payment_purchase_by_card_without_bonus",
            ),
            # Idempotent on the provider's reference: one payment per provider id.
            models.UniqueConstraint(
                fields=["provider", "provider_reference"],
                condition=~models.Q(provider_reference=""),
                name="payment_provider_reference_unique",
            ),
            # At most one auto-recharge in flight per account: a second trigger (the charge
            # that crossed the threshold, and the sweep) finds this one and does nothing.
            models.UniqueConstraint(
                fields=["account"],
                condition=models.Q(auto=True, status="pending"),
                name="payment_one_pending_auto",
            ),
        ]
        indexes = [
            # The recharge page's history: an account's payments, newest first.
            models.Index(fields=["account", "-created_at"], name="payment_account_time_idx"),
            # The pending-payment sweep: pending payments by age.
            models.Index(
                fields=["created_at"],
                condition=models.Q(status="pending"),
                name="payment_pending_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reference} {self.method} {self.status}"

    @property
    def is_pending(self) -> bool:
        return self.status == self.Status.PENDING


class BillingProfile(models.Model):
    """An account's invoice details (the buyer) and its auto-recharge settings."""

    class BuyerType(models.TextChoices):
        COMPANY = "company", _("Company")
        INDIVIDUAL = "individual", _("Individual")

    account = models.OneToOneField(
        "console.Account",
        on_delete=models.CASCADE,
        related_name="billing_profile",
        primary_key=True,
    )
    buyer_type = models.CharField(
        _("buyer type"), max_length=16, choices=BuyerType.choices, default=BuyerType.COMPANY
    )
    invoice_title = models.CharField(_("invoice title"), max_length=100, blank=True)
    tax_id = models.CharField(_("tax id"), max_length=20, blank=True)
    address = models.CharField(_("registered address"), max_length=200, blank=True)
    phone = models.CharField(_("phone"), max_length=30, blank=True)
    bank_name = models.CharField(_("bank"), max_length=100, blank=True)
    bank_account = models.CharField(_("bank account"), max_length=40, blank=True)
    invoice_email = models.EmailField(_("send invoices to"), blank=True)

    auto_recharge_enabled = models.BooleanField(_("auto-recharge"), default=False)
    auto_recharge_threshold_nano = models.BigIntegerField(
        _("when the balance falls below (nano)"), null=True, blank=True
    )
    auto_recharge_amount_nano = models.BigIntegerField(_("recharge (nano)"), null=True, blank=True)
    auto_recharge_monthly_limit_nano = models.BigIntegerField(
        _("at most per month (nano)"), null=True, blank=True
    )
    # Why auto-recharge last turned itself off (a declined card), shown on the billing pages.
    auto_recharge_disabled_reason = models.CharField(max_length=200, blank=True)
    auto_recharge_disabled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("billing profile")
        verbose_name_plural = _("billing profiles")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(auto_recharge_enabled=False)
                | (
                    models.Q(auto_recharge_threshold_nano__gt=0)
                    & models.Q(auto_recharge_amount_nano__gt=0)
                    & models.Q(
                        auto_recharge_monthly_limit_nano__gte=models.F("auto_recharge_amount_nano")
                    )
                ),
                name="auto_recharge_complete",
            ),
        ]

    def __str__(self) -> str:
        return f"billing profile of {self.account_id}"


# --- Invoices and statements ------------------------------------------------------------------


class InvoiceSequence(models.Model):
    """The last invoice number of a year. Taken under a row lock in the transaction that
    inserts the invoice, so a failed request rolls its number back: no gaps, no repeats."""

    year = models.PositiveSmallIntegerField(primary_key=True)
    last_number = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = _("invoice sequence")
        verbose_name_plural = _("invoice sequences")

    def __str__(self) -> str:
        return f"{self.year}: {self.last_number}"


class Invoice(models.Model):
    """A tax invoice (发票) for recharged money, or the reversal that voids one.

    Never edited once issued. Staff void an invoice by issuing a reversal (红字发票): a new
    row with its own number, the negative amount, and `reverses` pointing at the original.
    Sums over an account's rows are what it has invoiced.
    """

    class Kind(models.TextChoices):
        INVOICE = "invoice", _("Invoice")
        REVERSAL = "reversal", _("Reversal")

    account = models.ForeignKey("console.Account", on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    number = models.CharField(_("number"), max_length=20, unique=True)
    year = models.PositiveSmallIntegerField(_("year"))
    sequence = models.PositiveIntegerField(_("sequence"))
    amount_nano = models.BigIntegerField(_("amount (nano)"))
    currency = models.CharField(_("currency"), max_length=3)
    buyer_type = models.CharField(
        _("buyer type"), max_length=16, choices=BillingProfile.BuyerType.choices
    )
    buyer_title = models.CharField(_("buyer"), max_length=100)
    buyer_tax_id = models.CharField(_("buyer tax id"), max_length=20, blank=True)
    buyer_address = models.CharField(_("buyer address"), max_length=200, blank=True)
    buyer_phone = models.CharField(_("buyer phone"), max_length=30, blank=True)
    buyer_bank_name = models.CharField(_("buyer bank"), max_length=100, blank=True)
    buyer_bank_account = models.CharField(_("buyer bank account"), max_length=40, blank=True)
    # The seller as configured when the invoice was issued, so a later settings change does
    # not rewrite an issued document.
    seller = models.JSONField(_("seller"), default=dict)
    reverses = models.OneToOneField(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="reversal"
    )
    reason = models.CharField(_("reason"), max_length=200, blank=True)
    requested_by = models.ForeignKey(
        "console.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    issued_at = models.DateTimeField(_("issued"))

    class Meta:
        verbose_name = _("invoice")
        verbose_name_plural = _("invoices")
        constraints = [
            models.UniqueConstraint(fields=["year", "sequence"], name="invoice_number_unique"),
            models.CheckConstraint(
                condition=(models.Q(kind="invoice", amount_nano__gt=0, reverses__isnull=True))
                | (models.Q(kind="reversal", amount_nano__lt=0, reverses__isnull=False)),
                name="invoice_kind_consistent",
            ),
        ]
        indexes = [
            # The invoices page and the invoiceable total: an account's invoices, newest first.
            models.Index(fields=["account", "-issued_at"], name="invoice_account_time_idx"),
        ]

    def __str__(self) -> str:
        return self.number


class Statement(models.Model):
    """A closed month's statement: consumption by project and model, and the money that
    moved. A snapshot taken once the month has ended (in the account's time zone); the CSV
    and the PDF are rendered from it, so every download of it is the same document."""

    account = models.ForeignKey("console.Account", on_delete=models.PROTECT, related_name="+")
    month = models.DateField(_("month"), help_text=_("The first day of the month."))
    currency = models.CharField(_("currency"), max_length=3)
    data = models.JSONField(_("contents"))
    generated_at = models.DateTimeField(_("generated"))

    class Meta:
        verbose_name = _("statement")
        verbose_name_plural = _("statements")
        constraints = [
            models.UniqueConstraint(fields=["account", "month"], name="statement_month_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.month:%Y-%m}"
