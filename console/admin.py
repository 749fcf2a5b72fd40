"""Django admin registrations of the console's models. The Account admin, with its money
columns, staff actions and finance exports, reads and calls several apps: portal/admin.py."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db import transaction
from django.utils.translation import gettext_lazy as _
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from console.admin_mixins import CatalogueAuditMixin, ReadOnlyAdminMixin
from console.http import client_ip
from console.models import (
    Announcement,
    AuditEvent,
    AuthenticatorApp,
    Invitation,
    OutgoingEmail,
    RecoveryCodeSet,
    StaffTwoFactorLink,
    Tier,
    User,
)
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
