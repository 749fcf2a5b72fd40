"""The back-office's view of alerts sent (read-only: they are a record)."""

from django.contrib import admin

from alerts.models import AlertFiring
from console.admin_mixins import ReadOnlyAdminMixin


@admin.register(AlertFiring)
class AlertFiringAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["fired_at", "account", "kind", "subject", "level", "period", "cleared_at"]
    list_filter = ["kind"]
    search_fields = ["account__id", "account__name", "message"]
    date_hierarchy = "fired_at"
    list_select_related = ["account"]
