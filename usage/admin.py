"""The back-office's usage pages: records and roll-ups, read-only for everyone (derived
from the gateway's settlements; rebuilt with `manage.py rebuild_rollups`)."""

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from console.admin_mixins import ReadOnlyAdminMixin
from console.money import format_amount
from usage.models import UsageDaily, UsageHourly, UsageRecord


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "created_at",
        "account",
        "endpoint",
        "model_shown",
        "status",
        "input_tokens",
        "output_tokens",
        "fee",
        "key",
        "request_id",
    ]
    list_filter = ["source", "endpoint", "status", "model", "estimated"]
    search_fields = [
        "request_id",
        "client_request_id",
        "account__id",
        "account__name",
        "requested_model",
    ]
    date_hierarchy = "created_at"
    list_select_related = ["account", "api_key"]

    @admin.display(description=_("model"), ordering="model")
    def model_shown(self, record):
        return record.model_display

    @admin.display(description=_("fee"))
    def fee(self, record):
        return format_amount(record.fee_nano, record.account.currency, places=None)

    # The key's label and mask (its __str__), never anything that authenticates.
    @admin.display(description=_("API key"))
    def key(self, record):
        return str(record.api_key) if record.api_key_id else "—"

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        return ["key" if name == "api_key" else name for name in fields]


class UsageRollupAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_filter = ["source", "endpoint", "model"]
    search_fields = ["account__id", "account__name", "model"]
    list_select_related = ["account"]

    @admin.display(description=_("fees"))
    def fees(self, row):
        return format_amount(row.fee_nano, row.account.currency, places=None)


@admin.register(UsageDaily)
class UsageDailyAdmin(UsageRollupAdmin):
    list_display = ["day", "account", "model", "source", "endpoint", "requests", "fees"]
    date_hierarchy = "day"


@admin.register(UsageHourly)
class UsageHourlyAdmin(UsageRollupAdmin):
    list_display = ["hour", "account", "model", "source", "endpoint", "requests", "fees"]
    date_hierarchy = "hour"
