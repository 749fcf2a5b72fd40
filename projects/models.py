"""Projects group API keys; usage is attributed to the key's project.

The Foundation lays the model every account needs from its first minute (a Default project
that cannot be archived); caps, the list page and archiving arrive with the projects issue.
"""

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Project(models.Model):
    account = models.ForeignKey(
        "console.Account", on_delete=models.CASCADE, related_name="projects"
    )
    name = models.CharField(_("name"), max_length=100)
    description = models.TextField(_("description"), blank=True, max_length=2000)
    is_default = models.BooleanField(_("default project"), default=False)
    archived_at = models.DateTimeField(_("archived"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

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
        ]
        indexes = [
            # The account's project list (active first, by name).
            models.Index(fields=["account", "archived_at", "name"], name="project_account_idx"),
        ]

    def __str__(self) -> str:
        return self.name
