"""Projects group API keys; usage is attributed to the key's project. Each may have a monthly
spend cap (calendar month in the account's time zone) that blocks or only alerts."""

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class CapMode(models.TextChoices):
    BLOCK = "block", _("Block requests")
    ALERT = "alert", _("Alert only")


class Project(models.Model):
    account = models.ForeignKey(
        "console.Account", on_delete=models.CASCADE, related_name="projects"
    )
    name = models.CharField(_("name"), max_length=100)
    description = models.TextField(_("description"), blank=True, max_length=2000)
    is_default = models.BooleanField(_("default project"), default=False)
    archived_at = models.DateTimeField(_("archived"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    # Pack-covered tokens cost no money and do not count against the cap.
    monthly_cap_nano = models.BigIntegerField(_("monthly spend cap (nano)"), null=True, blank=True)
    cap_mode = models.CharField(
        _("cap mode"), max_length=8, choices=CapMode.choices, default=CapMode.BLOCK
    )

    class Meta:
        verbose_name = _("project")
        verbose_name_plural = _("projects")
        constraints = [
            models.UniqueConstraint(
                fields=["account"],
                condition=models.Q(is_default=True),
                name="project_one_default_per_account",
            ),
            models.CheckConstraint(
                condition=~models.Q(is_default=True, archived_at__isnull=False),
                name="project_default_never_archived",
            ),
            models.CheckConstraint(
                condition=models.Q(monthly_cap_nano__isnull=True)
                | models.Q(monthly_cap_nano__gt=0),
                name="project_cap_positive",
            ),
        ]
        indexes = [
            # The account's project list (active first, by name).
            models.Index(fields=["account", "archived_at", "name"], name="project_account_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None
