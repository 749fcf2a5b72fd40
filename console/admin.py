"""Django admin registrations. The full back-office (staff actions with reasons, read-only
money) arrives with its own issue; here staff can browse and edit tiers."""

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.utils.translation import gettext_lazy as _

from console.forms import TIME_ZONE_CHOICES
from console.models import Account, Announcement, AuditEvent, Invitation, Membership, Tier, User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ["email"]
    list_display = ["email", "name", "email_verified", "is_staff", "is_active", "date_joined"]
    list_filter = ["is_staff", "is_superuser", "is_active", "email_verified"]
    search_fields = ["email", "name"]
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        (_("Personal info"), {"fields": ["name", "language", "email_verified"]}),
        (
            _("Permissions"),
            {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]},
        ),
        (_("Important dates"), {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]


@admin.register(Tier)
class TierAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "rank", "retention_days", "requests_per_minute", "concurrency"]


class MembershipInline(admin.TabularInline):
    """Read-only: roles change through the members service (last-owner rule, audit)."""

    model = Membership
    extra = 0
    fields = ["user", "role", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class AccountAdminForm(forms.ModelForm):
    time_zone = forms.ChoiceField(choices=TIME_ZONE_CHOICES)

    class Meta:
        model = Account
        fields = ["name", "time_zone"]


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "status", "tier", "tier_pinned", "currency", "created_at"]
    list_filter = ["status", "tier", "currency"]
    search_fields = ["id", "name", "memberships__user__email"]
    # Status and tier change through services that write audit events (the back-office issue
    # adds them as admin actions with a reason); editing them here would skip the audit.
    form = AccountAdminForm
    readonly_fields = [
        "status",
        "tier",
        "tier_pinned",
        "currency",
        "money_moved_at",
        "monthly_budget_nano",
        "budget_mode",
        "created_at",
    ]
    inlines = [MembershipInline]


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["email", "account", "role", "created_at", "expires_at", "accepted_at"]
    search_fields = ["email"]
    exclude = ["token_hash"]
    readonly_fields = ["account", "email", "role", "invited_by", "accepted_by"]


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "account", "actor", "actor_kind", "action", "target_type"]
    list_filter = ["actor_kind", "action"]
    search_fields = ["action", "account__name", "actor__email", "target_id"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Announcement)
class AnnouncementAdmin(admin.ModelAdmin):
    """Staff publish notices on every account's overview (or one tier's or currency's)."""

    list_display = ["title", "level", "tier", "currency", "starts_at", "ends_at"]
    list_filter = ["level", "tier", "currency"]
    search_fields = ["title", "body"]
    date_hierarchy = "starts_at"
