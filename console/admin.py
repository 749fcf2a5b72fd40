"""Django admin registrations. Accounts carry the back-office's staff actions (each with a
reason and an audit event: console/admin_staff.py) and the finance exports."""

from functools import partial

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db import transaction
from django.urls import path
from django.utils.translation import gettext_lazy as _
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from console import admin_accounts, admin_staff
from console.admin_mixins import CatalogueAuditMixin, ReadOnlyAdminMixin, ReadOnlyInline
from console.forms import TIME_ZONE_CHOICES
from console.models import (
    Account,
    Announcement,
    AuditEvent,
    AuthenticatorApp,
    Invitation,
    Membership,
    OutgoingEmail,
    RecoveryCodeSet,
    StaffTwoFactorLink,
    Tier,
    User,
)
from console.money import format_amount
from console.services import audit_record


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
        (_("Accounts"), {"fields": ["accounts_max", "starter_pack_account"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]
    # Set by the sign-up; the pack itself is granted on verification, never from here.
    readonly_fields = ["starter_pack_account"]

    def save_model(self, request, obj, form, change):
        # Raising how many accounts one person may own multiplies the rate limits they can
        # hold, so it is recorded like any other staff change of a limit.
        from console.views import client_ip

        with transaction.atomic():
            super().save_model(request, obj, form, change)
            if change and "accounts_max" in form.changed_data:
                audit_record(
                    action="user.accounts_max_change",
                    actor=request.user,
                    actor_kind=AuditEvent.ActorKind.STAFF,
                    target=obj,
                    ip=client_ip(request),
                    metadata={"from": form.initial.get("accounts_max"), "to": obj.accounts_max},
                )

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

    def clean_time_zone(self):
        """The owner's rule: no zone in which a stated month is still going on."""
        from billing.services import time_zone_change_check
        from console.services import ServiceError

        time_zone = self.cleaned_data["time_zone"]
        if self.instance.pk and time_zone != self.instance.time_zone:
            try:
                time_zone_change_check(account=self.instance, time_zone=time_zone)
            except ServiceError as error:
                raise forms.ValidationError(str(error)) from error
        return time_zone


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

    def save_model(self, request, obj, form, change):
        """Through the owner's service: a time-zone change rebuilds the month counters and
        the daily roll-ups, and is audited."""
        from console.services import account_update
        from console.views import client_ip

        if not change:
            return super().save_model(request, obj, form, change)
        account_update(
            account=obj,
            actor=request.user,
            name=obj.name,
            time_zone=obj.time_zone,
            currency=obj.currency,
            ip=client_ip(request),
            actor_kind=AuditEvent.ActorKind.STAFF,
        )
        return None

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


@admin.register(Announcement)
class AnnouncementAdmin(CatalogueAuditMixin, admin.ModelAdmin):
    """Staff publish notices on every account's overview (or one tier's or currency's)."""

    list_display = ["title", "level", "tier", "currency", "starts_at", "ends_at"]
    list_filter = ["level", "tier", "currency"]
    search_fields = ["title", "body"]
    date_hierarchy = "starts_at"


# --- Two-factor authentication ----------------------------------------------------------------
# django-otp's own device tables are empty since migration 0010 (the console's devices keep
# the secrets encrypted or hashed): hidden. The console's devices are listed without their
# secrets; deleting a user's authenticator app and recovery codes is how staff reset a lost
# phone (docs/security.md). Nothing is added or edited here.
for _otp_model in (TOTPDevice, StaticDevice):
    if admin.site.is_registered(_otp_model):
        admin.site.unregister(_otp_model)


class _TwoFactorDeviceAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["user", "name", "confirmed", "created_at", "last_used_at"]
    list_filter = ["confirmed"]
    search_fields = ["user__email"]
    fields = ["user", "name", "confirmed", "created_at", "last_used_at"]

    def has_delete_permission(self, request, obj=None):
        # Staff delete a lost phone's app so its owner can set up a new one.
        return admin.ModelAdmin.has_delete_permission(self, request, obj)


@admin.register(AuthenticatorApp)
class AuthenticatorAppAdmin(_TwoFactorDeviceAdmin):
    pass


@admin.register(RecoveryCodeSet)
class RecoveryCodeSetAdmin(_TwoFactorDeviceAdmin):
    pass


@admin.register(StaffTwoFactorLink)
class StaffTwoFactorLinkAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Who was sent or printed a link, and whether it was used (never the link itself: only
    its hash is kept). Issued by the sign-in or `manage.py staff_two_factor_link`."""

    list_display = ["user", "via", "created_at", "expires_at", "used_at"]
    list_filter = ["via"]
    search_fields = ["user__email"]
    fields = ["user", "via", "created_at", "expires_at", "used_at"]
