from django import forms
from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from console.admin_mixins import CatalogueAuditMixin
from console.secrets_at_rest import encrypt_secret
from gateway.models import ModelAlias, UpstreamRoute


class UpstreamRouteForm(forms.ModelForm):
    # Write-only: typed once, stored encrypted, never shown again.
    secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        label=_("secret"),
        help_text=_("Leave empty to keep the stored secret. It is never shown again."),
    )

    class Meta:
        model = UpstreamRoute
        fields = ["model", "base_url", "protocol", "upstream_model", "timeout_seconds", "enabled"]

    def save(self, commit=True):
        route = super().save(commit=False)
        if self.cleaned_data.get("secret"):
            route.secret_encrypted = encrypt_secret(self.cleaned_data["secret"])
        if commit:
            route.save()
        return route


@admin.register(UpstreamRoute)
class UpstreamRouteAdmin(CatalogueAuditMixin, admin.ModelAdmin):
    audit_hidden_fields = ("secret",)
    form = UpstreamRouteForm
    list_display = [
        "model",
        "base_url",
        "protocol",
        "upstream_model",
        "timeout_seconds",
        "enabled",
        "has_secret",
    ]

    @admin.display(boolean=True, description=_("secret stored"))
    def has_secret(self, route):
        return bool(route.secret_encrypted)


@admin.register(ModelAlias)
class ModelAliasAdmin(CatalogueAuditMixin, admin.ModelAdmin):
    """The names coding tools ask for by default (Claude's), served as GLM models on the
    Anthropic-compatible endpoint; the quickstart shows this table."""

    list_display = ["pattern", "model"]
    search_fields = ["pattern", "model"]
