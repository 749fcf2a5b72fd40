from django.contrib import admin

from keys.models import ApiKey


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Read-only: staff see the mask, never the hash; revoking goes through the service
    (the back-office issue adds it as an action with a reason)."""

    list_display = ["label", "mask", "account", "project", "scope", "environment", "created_at"]
    list_filter = ["scope", "environment"]
    search_fields = ["label", "key_id", "account__name"]
    fields = [
        "account",
        "project",
        "label",
        "mask",
        "scope",
        "environment",
        "created_by",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
        "revoked_by",
        "replaced_by",
    ]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
