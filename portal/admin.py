"""The Account admin: the money columns (balances and this month's spend,
portal/admin_accounts.py), the summary of an account's page, and under its `get_urls` the
back-office's staff actions (each with a reason and an audit event) and the finance exports
(portal/admin_staff.py). The console's other models are registered in console/admin.py."""

from functools import partial

from django import forms
from django.contrib import admin
from django.urls import path
from django.utils.translation import gettext_lazy as _

from billing.services import time_zone_change_check
from console.admin_mixins import ReadOnlyInline
from console.forms import TIME_ZONE_CHOICES
from console.http import client_ip
from console.models import Account, AuditEvent, Membership
from console.money import format_amount
from console.services import ServiceError
from portal import admin_accounts, admin_staff
from portal.services import account_update


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
