"""Upstream routes: where each model's requests go. The secret is encrypted at rest with a
key from settings and never shown again."""

import re

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

# What a model name holds: letters, digits and . - _ : / (a pattern adds *).
_ALIAS_PATTERN = re.compile(r"[a-z0-9][a-z0-9.\-_:/*]*")

SIMULATOR = "simulator"


class Protocol(models.TextChoices):
    """What a route's upstream speaks: the gateway translates between the two where the
    endpoint called and the route differ (gateway/anthropic.py)."""

    OPENAI = "openai", _("OpenAI-compatible (chat/completions)")
    ANTHROPIC = "anthropic", _("Anthropic-compatible (v1/messages)")


class UpstreamRoute(models.Model):
    model = models.CharField(_("model"), max_length=64, unique=True)
    base_url = models.CharField(
        _("base URL"),
        max_length=300,
        help_text=_(
            "The upstream's base URL (…/api/paas/v4 for OpenAI-compatible, …/api/anthropic for "
            'Anthropic-compatible), or "simulator" for the built-in simulator.'
        ),
    )
    protocol = models.CharField(
        _("protocol"), max_length=16, choices=Protocol.choices, default=Protocol.OPENAI
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


class ModelAlias(models.Model):
    """A model name a client asks for that the gateway serves as one of its own models: coding
    tools such as Claude Code ask for Claude names (claude-sonnet-4-5-20250929, …) unless
    the user sets one. A pattern holds `*` wildcards (`claude-*sonnet*`); an exact name wins
    over a pattern, and a longer pattern over a shorter one. Names are lower-case and match
    whatever the case asked for. Used by the Anthropic-compatible endpoint."""

    pattern = models.CharField(
        _("requested name"),
        max_length=100,
        unique=True,
        help_text=_("A model name, or a pattern with * wildcards, e.g. claude-*sonnet*."),
    )
    model = models.CharField(_("served model"), max_length=64)

    class Meta:
        verbose_name = _("model alias")
        verbose_name_plural = _("model aliases")
        ordering = ["pattern"]

    def __str__(self) -> str:
        return f"{self.pattern} → {self.model}"

    def save(self, *args, **kwargs):
        self.pattern = self.pattern.strip().lower()
        self.model = self.model.strip().lower()
        super().save(*args, **kwargs)

    def clean(self):
        self.pattern = self.pattern.strip().lower()
        self.model = self.model.strip().lower()
        if not _ALIAS_PATTERN.fullmatch(self.pattern):
            raise ValidationError(
                {"pattern": _("Use letters, digits, . - _ : / and * for any characters.")}
            )
        if not UpstreamRoute.objects.filter(model=self.model).exists():
            raise ValidationError({"model": _("No upstream route serves this model.")})
