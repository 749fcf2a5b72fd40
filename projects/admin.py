from django.contrib import admin

from projects.models import Project


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "account", "is_default", "monthly_cap_nano", "cap_mode", "archived_at"]
    list_filter = ["is_default", "cap_mode"]
    search_fields = ["name", "account__name"]
    # Caps and archiving change through services that write audit events.
    readonly_fields = ["account", "is_default", "monthly_cap_nano", "cap_mode", "archived_at"]
