"""Usage: one record per request that passed authentication, and the hourly and daily
roll-ups that the usage page, the overview and the usage API read. The tables keep the
names they had in `billing` (the models moved here in issue 21 without a row moving)."""

from decimal import Decimal

from django.db import models
from django.utils.translation import gettext_lazy as _


class UsageRecord(models.Model):
    """One per request that passed authentication, forwarded or refused (refused ones cost
    nothing). Kept indefinitely and without content; unique per account and request id."""

    class Source(models.TextChoices):
        API = "api", _("API")
        CONSOLE = "console", _("Console")

    class Endpoint(models.TextChoices):
        """The API the request called: each answers in its own protocol, and the coding
        endpoint bills the plan. The console's playground calls as the OpenAI endpoint."""

        OPENAI = "openai", _("OpenAI-compatible")
        CODING = "coding", _("Coding plan (OpenAI-compatible)")
        ANTHROPIC = "anthropic", _("Anthropic-compatible")

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
    # The name the client asked for, when the gateway served it as another model (an alias
    # such as claude-sonnet-4-5 served as glm-4.7); empty when it is `model`.
    requested_model = models.CharField(_("requested model"), max_length=100, blank=True)
    endpoint = models.CharField(
        _("endpoint"), max_length=16, choices=Endpoint.choices, default=Endpoint.OPENAI
    )
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
    # A coding-plan request (issue 22) is paid by a plan term, not the wallet: the term's id
    # (plain, not a foreign key: plans sits above usage in the layers) and the prompts it
    # used, in thousandths. The plan's quota windows are rebuilt from these when Redis lost
    # them.
    plan_term_id = models.BigIntegerField(_("plan term"), null=True, blank=True)
    quota_milli = models.PositiveIntegerField(_("quota used (thousandths of a prompt)"), default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(_("time"))

    class Meta:
        db_table = "billing_usagerecord"
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

    @property
    def model_display(self) -> str:
        """The model as people read it: "claude-sonnet-4-5 → glm-4.7" when an alias was
        served, else the model."""
        if self.requested_model and self.requested_model != self.model:
            return f"{self.requested_model} → {self.model}"
        return self.model

    @property
    def quota_prompts(self) -> Decimal:
        """The coding-plan prompts the request counted, exactly (1, 0.067, 3)."""
        return Decimal(self.quota_milli) / 1000


class UsageRollup(models.Model):
    """What the usage records of one group add up to, per time bucket. Derived data: kept
    current in the transaction that inserts each usage record (`usage.rollups`), and
    rebuildable from the records at any time (`manage.py rebuild_rollups`). Pages and the
    usage API read these rows, never the records.

    The project and key are plain ids, 0 for none (playground traffic has no key): a
    nullable column would make every group with a null a distinct row to the unique index,
    and the upsert needs exactly one row per group.
    """

    account = models.ForeignKey("console.Account", on_delete=models.CASCADE, related_name="+")
    project_id = models.BigIntegerField(default=0)
    api_key_id = models.BigIntegerField(default=0)
    model = models.CharField(_("model"), max_length=64, blank=True)
    source = models.CharField(max_length=8)
    # The API the requests called (UsageRecord.Endpoint), a group like the source: never
    # null, for the same reason as the project and key. The database default lets an
    # insert written before issue 23 (billing 0009's backfill) still add rows.
    endpoint = models.CharField(
        _("endpoint"),
        max_length=16,
        choices=UsageRecord.Endpoint.choices,
        default=UsageRecord.Endpoint.OPENAI,
        db_default=UsageRecord.Endpoint.OPENAI,
    )
    requests = models.BigIntegerField(default=0)
    # Refused at admission (authentication passed): cost nothing.
    refused = models.BigIntegerField(default=0)
    # Forwarded, but the upstream failed or timed out (1230, 1231): cost nothing.
    upstream_errors = models.BigIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    pack_tokens = models.BigIntegerField(default=0)
    fee_nano = models.BigIntegerField(default=0)
    recharge_nano = models.BigIntegerField(default=0)
    bonus_nano = models.BigIntegerField(default=0)
    arrears_nano = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


class UsageHourly(UsageRollup):
    hour = models.DateTimeField(_("hour"), help_text=_("The hour's first instant (UTC)."))

    class Meta:
        db_table = "billing_usagehourly"
        verbose_name = _("hourly usage")
        verbose_name_plural = _("hourly usage")
        constraints = [
            # One row per group and hour (the upsert's conflict target); also serves the
            # usage API's hourly buckets: an account's rows in a time range.
            models.UniqueConstraint(
                fields=[
                    "account",
                    "hour",
                    "project_id",
                    "api_key_id",
                    "model",
                    "source",
                    "endpoint",
                ],
                name="usage_hourly_group_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.hour:%Y-%m-%d %H}:00 {self.model}: {self.requests}"


class UsageDaily(UsageRollup):
    day = models.DateField(_("day"), help_text=_("The calendar day in the account's time zone."))

    class Meta:
        db_table = "billing_usagedaily"
        verbose_name = _("daily usage")
        verbose_name_plural = _("daily usage")
        constraints = [
            # One row per group and day (the upsert's conflict target); also serves the
            # usage page, the overview and the daily API buckets: an account's days in a range.
            models.UniqueConstraint(
                fields=[
                    "account",
                    "day",
                    "project_id",
                    "api_key_id",
                    "model",
                    "source",
                    "endpoint",
                ],
                name="usage_daily_group_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.day} {self.model}: {self.requests}"
