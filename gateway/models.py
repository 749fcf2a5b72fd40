"""Upstream routes: where each model's requests go. The secret is encrypted at rest with a
key from settings and never shown again."""

from django.db import models
from django.utils.translation import gettext_lazy as _

SIMULATOR = "simulator"


class UpstreamRoute(models.Model):
    model = models.CharField(_("model"), max_length=64, unique=True)
    base_url = models.CharField(
        _("base URL"),
        max_length=300,
        help_text=_('An OpenAI-compatible base URL, or "simulator" for the built-in simulator.'),
    )
    upstream_model = models.CharField(
        _("upstream model name"), max_length=100, blank=True, help_text=_("Empty: the same.")
    )
    secret_encrypted = models.TextField(blank=True)
    timeout_seconds = models.PositiveIntegerField(_("timeout (seconds)"), default=120)
    enabled = models.BooleanField(_("enabled"), default=True)

    class Meta:
        verbose_name = _("upstream route")
        verbose_name_plural = _("upstream routes")

    def __str__(self) -> str:
        return f"{self.model} → {self.base_url}"

    @property
    def is_simulator(self) -> bool:
        return self.base_url == SIMULATOR
