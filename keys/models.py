"""API keys: `<key_id>.<secret>`. Only an HMAC-SHA256 of the secret (with a versioned pepper
from settings, never SECRET_KEY) is stored; the full key exists in one HTTP response."""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Scope(models.TextChoices):
    INFERENCE = "inference", _("Inference (the API)")
    ADMIN_READ = "admin-read", _("Admin read (usage and cost API)")


ENVIRONMENT_SUGGESTIONS = ["production", "staging", "test"]


class ApiKey(models.Model):
    account = models.ForeignKey("console.Account", on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey(
        "projects.Project", on_delete=models.PROTECT, related_name="api_keys"
    )
    # The public half of the key: looked up by the gateway, shown nowhere in full.
    key_id = models.CharField(max_length=32, unique=True)
    secret_hash = models.CharField(max_length=64)
    pepper_version = models.PositiveSmallIntegerField()
    last4 = models.CharField(max_length=4)
    label = models.CharField(_("label"), max_length=100)
    scope = models.CharField(
        _("scope"), max_length=16, choices=Scope.choices, default=Scope.INFERENCE
    )
    environment = models.CharField(_("environment"), max_length=32, default="production")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True)
    # Revocation may be scheduled (a rotation's grace period): the key works until then.
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    replaced_by = models.OneToOneField(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="replaces"
    )

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")
        indexes = [
            # The key list of an account, newest first.
            models.Index(fields=["account", "-created_at"], name="apikey_account_idx"),
            # Key counts per project on the project list.
            models.Index(fields=["project", "revoked_at"], name="apikey_project_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.label} ({self.mask})"

    @staticmethod
    def usable_q(now, prefix: str = "") -> models.Q:
        """Keys that work at `now` (not revoked yet, not expired), as a query filter;
        `prefix` reaches them through a relation, e.g. "api_keys__"."""
        return (
            models.Q(**{f"{prefix}revoked_at__isnull": True})
            | models.Q(**{f"{prefix}revoked_at__gt": now})
        ) & (
            models.Q(**{f"{prefix}expires_at__isnull": True})
            | models.Q(**{f"{prefix}expires_at__gt": now})
        )

    @property
    def mask(self) -> str:
        return f"…{self.last4}"

    def status(self, now=None) -> str:
        now = now or timezone.now()
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        if self.revoked_at is not None:
            return "revoking"
        return "active"

    @property
    def status_label(self) -> str:
        return {
            "active": _("Active"),
            "revoking": _("Active until revocation"),
            "revoked": _("Revoked"),
            "expired": _("Expired"),
        }[self.status()]

    @property
    def is_usable(self) -> bool:
        return self.status() in ("active", "revoking")
