"""Django admin registrations. Accounts carry the back-office's staff actions (each with a
reason and an audit event: console/admin_staff.py) and the finance exports."""

from functools import partial

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.urls import path
from django.utils.translation import gettext_lazy as _

from billing.money import format_amount
from console import admin_accounts, admin_staff
from console.admin_mixins import CatalogueAuditMixin, ReadOnlyAdminMixin, ReadOnlyInline
from console.forms import TIME_ZONE_CHOICES
from console.models import (
    Account,
    Announcement,
    AuditEvent,
    Invitation,
    Membership,
    OutgoingEmail,
    Tier,
    User,
)


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

    def has_delete_permission(self, request, obj=None):
        # Deleting a user would null the actor on ledger entries, payments and invoices and
        # drop memberships (even an account's last owner) without an audit row: people are
        # deactivated instead (is_active off).
        return False


@admin.register(Tier)
class TierAdmin(CatalogueAuditMixin, admin.ModelAdmin):
    list_display = ["name", "slug", "rank", "retention_days", "requests_per_minute", "concurrency"]


class MembershipInline(ReadOnlyInline):
    """Read-only: roles change through the members service (last-owner rule, audit)."""

    model = Membership
    fields = ["user", "role", "created_at"]
    readonly_fields = fields


class AccountAdminForm(forms.ModelForm):
    time_zone = forms.ChoiceField(choices=TIME_ZONE_CHOICES)

    class Meta:
        model = Account
        fields = ["name", "time_zone"]


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "name",
        "status",
        "tier",
        "tier_pinned",
        "currency",
        "recharge_balance",
        "bonus_balance",
        "arrears",
        "month_spend",
        "created_at",
    ]
    list_filter = ["status", "tier", "currency"]
    search_fields = ["=id", "name", "memberships__user__email"]
    list_select_related = ["tier"]
    # Status, tier and money change only through the staff actions (services that write an
    # audit event with the reason); editing them here would skip the audit.
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
    change_form_template = "admin/console/account/change_form.html"
    change_list_template = "admin/console/account/change_list.html"

    def get_queryset(self, request):
        """Balances and this month's spend in the list's one query (no query per row)."""
        return admin_accounts.with_money(super().get_queryset(request))

    @admin.display(description=_("Recharge balance"), ordering="recharge_nano")
    def recharge_balance(self, account):
        return format_amount(account.recharge_nano or 0, account.currency)

    @admin.display(description=_("Bonus balance"), ordering="bonus_nano")
    def bonus_balance(self, account):
        return format_amount(account.bonus_nano or 0, account.currency)

    @admin.display(description=_("Arrears"), ordering="arrears_nano")
    def arrears(self, account):
        return format_amount(account.arrears_nano or 0, account.currency)

    @admin.display(description=_("Spend this month"), ordering="month_spend_nano")
    def month_spend(self, account):
        return format_amount(account.month_spend_nano, account.currency)

    def get_urls(self):
        def wrap(view):
            return self.admin_site.admin_view(partial(view, model_admin=self))

        return [
            path(
                "finance-export/",
                wrap(admin_staff.finance_export_view),
                name="console_account_finance_export",
            ),
            path(
                "<str:object_id>/staff/revoke-key/<str:key_id>/",
                wrap(admin_staff.revoke_key_view),
                name="console_account_revoke_key",
            ),
            path(
                "<str:object_id>/staff/<slug:slug>/",
                wrap(admin_staff.staff_action_view),
                name="console_account_staff_action",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "staff_actions": admin_staff.offered_actions(request.user),
        }
        if object_id and object_id.isascii() and object_id.isdigit():
            account = self.get_object(request, object_id)
            if account is not None:
                # Rendered here, where the request is known: the revoke links only for
                # staff who may revoke.
                extra_context["staff_summary"] = admin_accounts.summary_html(
                    account, may_revoke=request.user.has_perm("console.staff_revoke_key")
                )
        return super().change_view(request, object_id, form_url, extra_context)

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "may_export": request.user.has_perm("console.staff_export_finance"),
        }
        return super().changelist_view(request, extra_context)


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["email", "account", "role", "created_at", "expires_at", "accepted_at"]
    search_fields = ["email"]
    exclude = ["token_hash"]
    readonly_fields = ["account", "email", "role", "invited_by", "accepted_by"]


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "account",
        "actor",
        "actor_kind",
        "action",
        "target_type",
        "target_id",
        "reason",
    ]
    list_filter = ["actor_kind", "action"]
    search_fields = ["=account__id", "account__name", "actor__email", "action", "target_id"]
    list_select_related = ["account", "actor"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(OutgoingEmail)
class OutgoingEmailAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """What was sent, what is still being tried and what failed (after EMAIL_MAX_ATTEMPTS),
    read-only; the bodies are never shown (they can hold one-time links)."""

    list_display = [
        "created_at",
        "kind",
        "recipient",
        "subject",
        "status",
        "attempts",
        "last_error",
    ]
    list_filter = ["status", "kind"]
    search_fields = ["recipient"]
    date_hierarchy = "created_at"
    fields = [
        "kind",
        "recipient",
        "subject",
        "status",
        "attempts",
        "last_error",
        "created_at",
        "last_attempt_at",
        "next_attempt_at",
        "sent_at",
    ]

    def get_readonly_fields(self, request, obj=None):
        return self.fields


@admin.register(Announcement)
class AnnouncementAdmin(CatalogueAuditMixin, admin.ModelAdmin):
    """Staff publish notices on every account's overview (or one tier's or currency's)."""

    list_display = ["title", "level", "tier", "currency", "starts_at", "ends_at"]
    list_filter = ["level", "tier", "currency"]
    search_fields = ["title", "body"]
    date_hierarchy = "starts_at"
