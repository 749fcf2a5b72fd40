"""Spend alerts: an account's settings and the alerts sent. The tables keep the names they
had in `billing` (the models moved here in issue 21 without a row moving)."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class AlertSettings(models.Model):
    """An account's spend alerts (owner, admin and finance edit them) and where they go."""

    account = models.OneToOneField(
        "console.Account", on_delete=models.CASCADE, related_name="alert_settings", primary_key=True
    )
    balance_below_nano = models.BigIntegerField(
        _("when the balance falls below (nano)"), null=True, blank=True
    )
    caps = models.BooleanField(
        _("projects at 50, 80 and 100 percent of their cap, and the account budget"), default=True
    )
    # 30 = 3.0 times: tenths keep it an integer.
    spike_tenths = models.PositiveIntegerField(
        _("daily spend above this many tenths of the 7-day average"),
        null=True,
        blank=True,
        default=30,
    )
    pack_low_percent = models.PositiveSmallIntegerField(
        _("a resource pack below this percent"), null=True, blank=True, default=10
    )
    pack_expiry_days = models.PositiveSmallIntegerField(
        _("a resource pack expiring within days"), null=True, blank=True, default=7
    )
    email = models.BooleanField(_("email"), default=True)
    in_app = models.BooleanField(_("in-app notification"), default=True)
    webhook = models.BooleanField(_("webhooks"), default=True)

    class Meta:
        db_table = "billing_alertsettings"
        verbose_name = _("alert settings")
        verbose_name_plural = _("alert settings")
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(balance_below_nano__isnull=True) | models.Q(balance_below_nano__gt=0)
                )
                & (models.Q(spike_tenths__isnull=True) | models.Q(spike_tenths__gt=10))
                & (
                    models.Q(pack_low_percent__isnull=True)
                    | models.Q(pack_low_percent__range=(1, 99))
                ),
                name="alert_settings_in_range",
            ),
        ]

    def __str__(self) -> str:
        return f"alert settings of {self.account_id}"


class AlertFiring(models.Model):
    """One alert sent: a condition (kind, subject, level) that became true in a period.

    At most one firing per condition is open (not cleared); it clears when the condition
    does (a recharge lifts the balance, a cap is raised), which re-arms the alert. The next
    crossing is the next sequence number. The unique constraint, not a check, is what makes
    two evaluations racing each other send one alert."""

    class Kind(models.TextChoices):
        BALANCE_LOW = "balance_low", _("Balance below the threshold")
        PROJECT_CAP = "project_cap", _("Project at a share of its cap")
        ACCOUNT_BUDGET = "account_budget", _("Account at a share of its budget")
        DAILY_SPIKE = "daily_spike", _("Unusual daily spend")
        PACK_LOW = "pack_low", _("Resource pack running low")
        PACK_EXPIRING = "pack_expiring", _("Resource pack expiring")
        # The GLM Coding Plan (issue 22).
        PLAN_QUOTA = "plan_quota", _("Coding plan quota used")
        PLAN_RENEWAL = "plan_renewal", _("Coding plan renewing or ending soon")
        PLAN_ENDED = "plan_ended", _("Coding plan ended")

    account = models.ForeignKey("console.Account", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    # "" for the account, "project:12", "pack:5", "window:5h", "subscription:3".
    subject = models.CharField(_("subject"), max_length=40, blank=True)
    level = models.PositiveSmallIntegerField(_("level"), default=0)
    # The month of a cap or budget, the day of a spike; "" where crossings have no period.
    period = models.CharField(_("period"), max_length=16, blank=True)
    sequence = models.PositiveIntegerField(default=1)
    message = models.CharField(_("message"), max_length=300)
    fired_at = models.DateTimeField(_("sent"))
    cleared_at = models.DateTimeField(_("cleared"), null=True, blank=True)

    class Meta:
        db_table = "billing_alertfiring"
        verbose_name = _("alert sent")
        verbose_name_plural = _("alerts sent")
        constraints = [
            models.UniqueConstraint(
                fields=["account", "kind", "subject", "level", "period", "sequence"],
                name="alert_firing_once",
            ),
        ]
        indexes = [
            # The alerts page: an account's firings, newest first.
            models.Index(fields=["account", "-fired_at"], name="alert_firing_account_idx"),
            # The evaluation's and the sweep's open firings (few: stale ones are closed).
            models.Index(
                fields=["account"],
                condition=models.Q(cleared_at__isnull=True),
                name="alert_firing_open_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.subject} {self.level} {self.period}#{self.sequence}"
