"""The back-office's money pages and price catalogue.

Money (ledger, usage, payments, invoices, statements, packs, roll-ups, alerts sent) is
read-only for everyone, superusers included: it changes through services that keep the
ledger append-only and write audit events (the staff actions). Model prices are never edited
either: a change of price is a new row with a later `effective_from`.
"""

from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import admin
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from billing.models import (
    Invoice,
    LedgerEntry,
    ModelPrice,
    PackConsumption,
    PackProduct,
    Payment,
    Promotion,
    ResourcePack,
    Statement,
)
from console.admin_mixins import (
    AddOnlyAdminMixin,
    CatalogueAuditMixin,
    ReadOnlyAdminMixin,
    ReadOnlyInline,
)
from console.money import format_amount


def money_text(nano: int, currency: str | None) -> str:
    return format_amount(nano, currency, places=None)


# --- Read-only money ---------------------------------------------------------------------------


class PackConsumptionInline(ReadOnlyInline):
    model = PackConsumption
    fields = ["pack", "input_tokens", "output_tokens"]
    readonly_fields = fields


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "account", "kind", "recharge", "bonus", "arrears", "reference"]
    list_filter = ["kind"]
    search_fields = ["account__id", "account__name", "reference", "request_id"]
    date_hierarchy = "created_at"
    list_select_related = ["account"]
    inlines = [PackConsumptionInline]

    @admin.display(description=_("recharge change"))
    def recharge(self, entry):
        return money_text(entry.recharge_delta_nano, entry.account.currency)

    @admin.display(description=_("bonus change"))
    def bonus(self, entry):
        return money_text(entry.bonus_delta_nano, entry.account.currency)

    @admin.display(description=_("arrears change"))
    def arrears(self, entry):
        return money_text(entry.arrears_delta_nano, entry.account.currency)


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "reference", "account", "method", "status", "amount", "bonus"]
    list_filter = ["status", "method", "currency", "auto"]
    search_fields = ["reference", "provider_reference", "account__id", "account__name"]
    date_hierarchy = "created_at"
    list_select_related = ["account"]

    @admin.display(description=_("amount"))
    def amount(self, payment):
        return format_amount(payment.amount_nano, payment.currency)

    @admin.display(description=_("promotion bonus"))
    def bonus(self, payment):
        return format_amount(payment.bonus_nano, payment.currency)


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["issued_at", "number", "kind", "account", "buyer_title", "amount"]
    list_filter = ["kind", "currency", "year"]
    search_fields = ["number", "buyer_title", "buyer_tax_id", "account__id", "account__name"]
    date_hierarchy = "issued_at"
    list_select_related = ["account"]

    @admin.display(description=_("amount"))
    def amount(self, invoice):
        return format_amount(invoice.amount_nano, invoice.currency)


@admin.register(Statement)
class StatementAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["month", "account", "currency", "generated_at"]
    list_filter = ["currency"]
    search_fields = ["account__id", "account__name"]
    date_hierarchy = "month"
    list_select_related = ["account"]


@admin.register(ResourcePack)
class ResourcePackAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Packs are bought or granted through services (grants are a staff action)."""

    list_display = [
        "name",
        "account",
        "source",
        "model",
        "tokens_remaining",
        "tokens_total",
        "expires_at",
        "closed_at",
    ]
    list_filter = ["source", "model"]
    search_fields = ["name", "account__id", "account__name"]
    date_hierarchy = "created_at"
    list_select_related = ["account"]


@admin.register(PackConsumption)
class PackConsumptionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["entry", "pack", "input_tokens", "output_tokens"]
    search_fields = ["pack__name", "entry__account__name", "entry__request_id"]
    list_select_related = ["entry", "pack"]


# --- Catalogue ---------------------------------------------------------------------------------

# A new price may start a little in the past (the time it took to fill in the form), no more:
# requests already charged keep the price they were charged at.
PRICE_BACKDATE_GRACE = timedelta(minutes=1)


def not_backdated(effective_from, message):
    """An effective-dated catalogue row starts now (a minute's grace) or later: what was
    charged or served before it stays as it was."""
    if effective_from < timezone.now() - PRICE_BACKDATE_GRACE:
        raise forms.ValidationError(message)
    return effective_from


class ModelPriceForm(forms.ModelForm):
    currency = forms.ChoiceField(label=_("currency"), choices=settings.CURRENCIES)

    class Meta:
        model = ModelPrice
        fields = [
            "model",
            "currency",
            "input_per_million_nano",
            "output_per_million_nano",
            "effective_from",
        ]

    def clean_effective_from(self):
        return not_backdated(
            self.cleaned_data["effective_from"],
            _("A price cannot start in the past: requests were charged at the old one."),
        )

    def _non_negative(self, name):
        value = self.cleaned_data[name]
        if value < 0:
            raise forms.ValidationError(_("A price cannot be negative."))
        return value

    def clean_input_per_million_nano(self):
        return self._non_negative("input_per_million_nano")

    def clean_output_per_million_nano(self):
        return self._non_negative("output_per_million_nano")


@admin.register(ModelPrice)
class ModelPriceAdmin(AddOnlyAdminMixin, CatalogueAuditMixin, admin.ModelAdmin):
    """Add-only: a change of price is a new row with a later `effective_from`; no row is
    ever changed or deleted (one that has been charged must not be, and keeping the rule
    for every row keeps it simple)."""

    form = ModelPriceForm
    list_display = ["model", "currency", "input_price", "output_price", "effective_from"]
    list_filter = ["currency", "model"]
    search_fields = ["model"]
    date_hierarchy = "effective_from"
    ordering = ["model", "currency", "-effective_from"]

    @admin.display(description=_("input per 1M tokens"))
    def input_price(self, price):
        return money_text(price.input_per_million_nano, price.currency)

    @admin.display(description=_("output per 1M tokens"))
    def output_price(self, price):
        return money_text(price.output_per_million_nano, price.currency)


@admin.register(PackProduct)
class PackProductAdmin(CatalogueAuditMixin, admin.ModelAdmin):
    """Take a product off sale with "on sale"; deleting one that packs were made from is
    refused (PROTECT), and bought packs keep their own name, tokens and expiry."""

    list_display = ["name", "model", "tokens", "validity_days", "price_cny", "price_usd", "active"]
    list_filter = ["active", "model"]
    search_fields = ["name", "model"]

    @admin.display(description=_("price, CNY"))
    def price_cny(self, product):
        return format_amount(product.price_cny_nano, "CNY")

    @admin.display(description=_("price, USD"))
    def price_usd(self, product):
        return format_amount(product.price_usd_nano, "USD")


@admin.register(Promotion)
class PromotionAdmin(CatalogueAuditMixin, admin.ModelAdmin):
    """A payment records the promotion in force when it started, so editing one here does
    not change a bonus someone was already shown."""

    list_display = ["name", "currency", "minimum", "bonus_basis_points", "active", "starts_at"]
    list_filter = ["currency", "active"]
    search_fields = ["name"]

    @admin.display(description=_("from a recharge of"))
    def minimum(self, promotion):
        return format_amount(promotion.min_amount_nano, promotion.currency)
