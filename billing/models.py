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
