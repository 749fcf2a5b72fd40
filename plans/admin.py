"""The coding plan's catalogue in the back-office. Prices and limits are add-only, like model
prices: a change is a new row from a later moment, so what subscribers bought at and the
limits in force at any time stay readable. Every change writes one audit event."""

from django import forms
from django.conf import settings
from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from billing.admin import not_backdated
from console.admin_mixins import (
    AddOnlyAdminMixin,
    CatalogueAuditMixin,
    ReadOnlyAdminMixin,
    ReadOnlyInline,
)
from console.money import format_amount
from plans.models import (
    CodingModel,
    Plan,
    PlanLimits,
    PlanPrice,
    PlanTerm,
    Subscription,
    model_name,
)


def _not_in_the_past(value):
    return not_backdated(
        value,
        _("A catalogue row cannot start in the past: subscribers were served by the old one."),
    )


class _NeverDeleted:
    """Rows that subscriptions refer to: the `fixed` fields cannot change once the row is
    made, and no row is deleted."""

    fixed: tuple[str, ...] = ()

    def get_readonly_fields(self, request, obj=None):
        return list(self.fixed) if obj is not None else []

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Plan)
class PlanAdmin(_NeverDeleted, CatalogueAuditMixin, admin.ModelAdmin):
    """Rename a plan or change the models it covers; its code and rank are fixed once made
    (subscriptions and upgrades refer to them), and no plan is deleted."""

    list_display = ["name", "code", "rank", "model_list"]
    filter_horizontal = ["coding_models"]
    fixed = ("code", "rank")

    @admin.display(description=_("models"))
    def model_list(self, plan):
        return ", ".join(model.model for model in plan.coding_models.all())

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("coding_models")


class PlanPriceForm(forms.ModelForm):
    currency = forms.ChoiceField(label=_("currency"), choices=settings.CURRENCIES)

    class Meta:
        model = PlanPrice
        fields = ["plan", "period", "currency", "amount_nano", "effective_from"]

    def clean_amount_nano(self):
        amount = self.cleaned_data["amount_nano"]
        if amount <= 0:
            raise forms.ValidationError(_("A plan's price must be more than zero."))
        return amount

    def clean_effective_from(self):
        return _not_in_the_past(self.cleaned_data["effective_from"])


@admin.register(PlanPrice)
class PlanPriceAdmin(AddOnlyAdminMixin, CatalogueAuditMixin, admin.ModelAdmin):
    form = PlanPriceForm
    list_display = ["plan", "period", "currency", "price", "effective_from"]
    list_filter = ["plan", "period", "currency"]
    ordering = ["plan__rank", "period", "currency", "-effective_from"]

    @admin.display(description=_("price"))
    def price(self, row):
        return format_amount(row.amount_nano, row.currency, places=None)


class PlanLimitsForm(forms.ModelForm):
    class Meta:
        model = PlanLimits
        fields = [
            "plan",
            "prompts_5h",
            "prompts_week",
            "prompts_month",
            "mcp_calls_month",
            "concurrency",
            "continuation_divisor",
            "daily_new_subscriptions",
            "effective_from",
        ]

    def clean(self):
        cleaned = super().clean()
        for name in ("prompts_5h", "prompts_week", "prompts_month", "concurrency"):
            if cleaned.get(name) == 0:
                self.add_error(name, _("Must be at least 1."))
        if cleaned.get("continuation_divisor") == 0:
            self.add_error("continuation_divisor", _("Must be at least 1."))
        return cleaned

    def clean_effective_from(self):
        return _not_in_the_past(self.cleaned_data["effective_from"])


@admin.register(PlanLimits)
class PlanLimitsAdmin(AddOnlyAdminMixin, CatalogueAuditMixin, admin.ModelAdmin):
    form = PlanLimitsForm
    list_display = [
        "plan",
        "prompts_5h",
        "prompts_week",
        "prompts_month",
        "mcp_calls_month",
        "concurrency",
        "daily_new_subscriptions",
        "effective_from",
    ]
    list_filter = ["plan"]
    ordering = ["plan__rank", "-effective_from"]


class CodingModelForm(forms.ModelForm):
    class Meta:
        model = CodingModel
        fields = ["model", "weight_milli"]

    def clean_model(self):
        name = model_name(self.cleaned_data["model"])
        if not name:
            raise forms.ValidationError(_("A model name is required."))
        return name

    def clean_weight_milli(self):
        weight = self.cleaned_data["weight_milli"]
        if weight <= 0:
            raise forms.ValidationError(_("A request must count for more than zero prompts."))
        return weight


@admin.register(CodingModel)
class CodingModelAdmin(_NeverDeleted, CatalogueAuditMixin, admin.ModelAdmin):
    """A model's weight may change (it applies from the next request); its name is fixed
    once made, and none is deleted: take it off a plan instead."""

    form = CodingModelForm
    list_display = ["model", "weight_milli", "plan_list"]
    fixed = ("model",)

    @admin.display(description=_("plans"))
    def plan_list(self, model):
        return ", ".join(plan.name for plan in model.plans.all())

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("plans")


class PlanTermInline(ReadOnlyInline):
    model = PlanTerm
    fields = ["kind", "plan", "starts_at", "ends_at", "amount", "ledger_entry", "created_at"]
    readonly_fields = fields

    @admin.display(description=_("amount"))
    def amount(self, term):
        return format_amount(term.amount_nano, term.subscription.currency, places=None)


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Subscribers per plan, read-only: subscriptions are bought and changed through the
    services (staff grant, extend and end come with the back-office actions)."""

    list_display = ["account", "plan", "period", "price", "period_end", "auto_renew", "ended_at"]
    list_filter = ["plan", "period", "auto_renew", ("ended_at", admin.EmptyFieldListFilter)]
    search_fields = ["account__id", "account__name"]
    list_select_related = ["account", "plan"]
    inlines = [PlanTermInline]

    @admin.display(description=_("price per period"))
    def price(self, subscription):
        return format_amount(subscription.price_nano, subscription.currency, places=None)
