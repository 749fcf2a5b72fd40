"""The back-office's staff actions and finance exports, served under the Account admin.

Each action asks for a reason on its own confirmation page (GET shows the form, POST with
the CSRF token performs it), requires its own permission (403 without it, and the link is
not offered), and calls the service that owns the change, which writes the one audit event
with the reason. Nothing here writes money rows itself.
"""

import csv
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from billing.exports import KINDS, finance_export_rows
from billing.models import Payment
from billing.payments import payment_confirm_bank_transfer
from billing.selectors import refundable_nano
from billing.services import bonus_grant, pack_grant, refund
from console.models import Account, AuditEvent, Tier
from console.money import AmountError, format_amount, parse_amount
from console.services import ServiceError, account_set_status, account_set_tier
from keys.models import ApiKey
from keys.services import api_key_revoke
from plans.models import Period, Plan
from plans.services import plan_change, plan_end_now, plan_extend, plan_grant

STAFF = AuditEvent.ActorKind.STAFF


class ReasonForm(forms.Form):
    reason = forms.CharField(
        label=gettext_lazy("Reason"),
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=gettext_lazy("Recorded in the audit log with the change."),
    )
    # Drawn when the page is shown: a form sent twice records the change once.
    reference = forms.CharField(widget=forms.HiddenInput, max_length=100)

    def __init__(self, *args, account: Account, **kwargs):
        self.account = account
        kwargs.setdefault("initial", {}).setdefault("reference", f"staff-{uuid.uuid4().hex}")
        super().__init__(*args, **kwargs)
        self.order_fields([name for name in self.fields if name != "reason"] + ["reason"])

    def clean_reason(self):
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError(_("Give a reason."))
        return reason


class AmountForm(ReasonForm):
    amount = forms.CharField(
        label=gettext_lazy("Amount"), help_text=gettext_lazy("Like 100 or 12.50.")
    )

    def clean_amount(self):
        try:
            return parse_amount(self.cleaned_data["amount"])
        except AmountError as error:
            raise forms.ValidationError(str(error)) from error


class RefundForm(AmountForm):
    def clean_amount(self):
        amount = super().clean_amount()
        refundable = refundable_nano(account=self.account)
        if amount > refundable:
            raise forms.ValidationError(
                _("At most %(amount)s can be refunded.")
                % {"amount": format_amount(refundable, self.account.currency)}
            )
        return amount


class TransferForm(ReasonForm):
    payment = forms.ModelChoiceField(
        label=gettext_lazy("Pending bank transfer"), queryset=Payment.objects.none()
    )

    def __init__(self, *args, account: Account, **kwargs):
        super().__init__(*args, account=account, **kwargs)
        self.fields["payment"].queryset = Payment.objects.filter(
            account=account, method=Payment.Method.BANK_TRANSFER, status=Payment.Status.PENDING
        ).order_by("created_at")
        self.fields["payment"].label_from_instance = lambda payment: (
            f"{payment.reference} · {format_amount(payment.amount_nano, payment.currency)}"
            f" · {payment.created_at:%Y-%m-%d}"
        )


class PackForm(ReasonForm):
    tokens = forms.IntegerField(label=gettext_lazy("Tokens"), min_value=1, max_value=10**13)
    days = forms.IntegerField(
        label=gettext_lazy("Valid for (days)"), min_value=1, max_value=3650, initial=30
    )
    model = forms.CharField(
        label=gettext_lazy("Model"),
        required=False,
        max_length=64,
        help_text=gettext_lazy("Empty: any model."),
    )


class PlanGrantForm(ReasonForm):
    plan = forms.ModelChoiceField(
        label=gettext_lazy("Coding plan"), queryset=Plan.objects.all(), to_field_name="code"
    )
    period = forms.ChoiceField(label=gettext_lazy("Period"), choices=Period.choices)


class PlanExtendForm(ReasonForm):
    days = forms.IntegerField(label=gettext_lazy("Days"), min_value=1, max_value=366)


class PlanChangeForm(ReasonForm):
    plan = forms.ModelChoiceField(
        label=gettext_lazy("Coding plan"), queryset=Plan.objects.all(), to_field_name="code"
    )


class PlanEndForm(ReasonForm):
    refund = forms.BooleanField(
        label=gettext_lazy("Refund the unused share"),
        required=False,
        help_text=gettext_lazy(
            "Each paid term still running gives back what is left of it, prorated, to recharge "
            "and bonus as it was paid."
        ),
    )


class TierForm(ReasonForm):
    tier = forms.ModelChoiceField(label=gettext_lazy("Tier"), queryset=Tier.objects.all())
    pinned = forms.BooleanField(
        label=gettext_lazy("Pin the tier"),
        required=False,
        help_text=gettext_lazy("A pinned tier is not changed by promotion."),
    )

    def __init__(self, *args, account: Account, **kwargs):
        kwargs.setdefault("initial", {}).update(
            {"tier": account.tier_id, "pinned": account.tier_pinned}
        )
        super().__init__(*args, account=account, **kwargs)
        self.fields["tier"].queryset = Tier.objects.order_by("rank")


class StatusForm(ReasonForm):
    status = forms.ChoiceField(label=gettext_lazy("Status"), choices=Account.Status.choices)

    def __init__(self, *args, account: Account, **kwargs):
        other = (
            Account.Status.ACTIVE
            if account.status == Account.Status.SUSPENDED
            else Account.Status.SUSPENDED
        )
        kwargs.setdefault("initial", {})["status"] = other
        super().__init__(*args, account=account, **kwargs)


class RevokeForm(ReasonForm):
    pass


def _bonus(request, account, data) -> str:
    bonus_grant(
        account=account,
        amount_nano=data["amount"],
        reference=data["reference"],
        actor=request.user,
        actor_kind=STAFF,
        reason=data["reason"],
    )
    return _("Granted %(amount)s of bonus credit.") % {
        "amount": format_amount(data["amount"], account.currency)
    }


def _transfer(request, account, data) -> str:
    payment = payment_confirm_bank_transfer(
        payment=data["payment"], actor=request.user, reason=data["reason"]
    )
    return _("Bank transfer %(reference)s confirmed.") % {"reference": payment.reference}


def _refund(request, account, data) -> str:
    refund(
        account=account,
        amount_nano=data["amount"],
        reference=data["reference"],
        reason=data["reason"],
        actor=request.user,
        actor_kind=STAFF,
    )
    return _("Refund of %(amount)s recorded.") % {
        "amount": format_amount(data["amount"], account.currency)
    }


def _pack(request, account, data) -> str:
    pack_grant(
        account=account,
        tokens=data["tokens"],
        days=data["days"],
        model=data["model"].strip(),
        reference=data["reference"],
        actor=request.user,
        actor_kind=STAFF,
        reason=data["reason"],
    )
    return _("Granted a pack of %(tokens)s tokens.") % {"tokens": data["tokens"]}


def _tier(request, account, data) -> str:
    account_set_tier(
        account=account,
        tier=data["tier"],
        pinned=data["pinned"],
        actor=request.user,
        actor_kind=STAFF,
        reason=data["reason"],
    )
    return _("Tier set to %(tier)s.") % {"tier": data["tier"].display_name}


def _status(request, account, data) -> str:
    account_set_status(
        account=account,
        status=data["status"],
        actor=request.user,
        actor_kind=STAFF,
        reason=data["reason"],
    )
    return _("Account status set to %(status)s.") % {"status": Account.Status(data["status"]).label}


def _plan_grant(request, account, data) -> str:
    plan_grant(
        account=account,
        plan=data["plan"],
        period=data["period"],
        actor=request.user,
        reason=data["reason"],
    )
    return _("Granted the coding plan %(plan)s.") % {"plan": data["plan"].name}


def _plan_extend(request, account, data) -> str:
    subscription = plan_extend(
        account=account, days=data["days"], actor=request.user, reason=data["reason"]
    )
    return _("The coding plan now runs until %(end)s.") % {
        "end": timezone.localtime(subscription.period_end).strftime("%Y-%m-%d %H:%M")
    }


def _plan_change(request, account, data) -> str:
    plan_change(account=account, plan=data["plan"], actor=request.user, reason=data["reason"])
    return _("The coding plan is now %(plan)s.") % {"plan": data["plan"].name}


def _plan_end(request, account, data) -> str:
    refunded = plan_end_now(
        account=account, refund=data["refund"], actor=request.user, reason=data["reason"]
    )
    return _("The coding plan ended; refunded %(amount)s.") % {
        "amount": format_amount(refunded, account.currency)
    }


@dataclass(frozen=True)
class StaffAction:
    slug: str
    title: str
    permission: str  # a codename on console.Account
    form: type[ReasonForm]
    perform: Callable[..., str]


ACTIONS = {
    action.slug: action
    for action in [
        StaffAction(
            "grant-bonus",
            gettext_lazy("Grant bonus credit"),
            "staff_grant_bonus",
            AmountForm,
            _bonus,
        ),
        StaffAction(
            "confirm-transfer",
            gettext_lazy("Confirm a bank transfer"),
            "staff_confirm_transfer",
            TransferForm,
            _transfer,
        ),
        StaffAction("refund", gettext_lazy("Refund"), "staff_refund", RefundForm, _refund),
        StaffAction(
            "grant-pack",
            gettext_lazy("Grant a resource pack"),
            "staff_grant_pack",
            PackForm,
            _pack,
        ),
        StaffAction(
            "tier", gettext_lazy("Change or pin the tier"), "staff_change_tier", TierForm, _tier
        ),
        StaffAction(
            "plan-grant",
            gettext_lazy("Grant a coding plan"),
            "staff_manage_plan",
            PlanGrantForm,
            _plan_grant,
        ),
        StaffAction(
            "plan-extend",
            gettext_lazy("Extend the coding plan"),
            "staff_manage_plan",
            PlanExtendForm,
            _plan_extend,
        ),
        StaffAction(
            "plan-change",
            gettext_lazy("Change the coding plan"),
            "staff_manage_plan",
            PlanChangeForm,
            _plan_change,
        ),
        StaffAction(
            "plan-end",
            gettext_lazy("End the coding plan (and refund)"),
            "staff_manage_plan",
            PlanEndForm,
            _plan_end,
        ),
        StaffAction(
            "status",
            gettext_lazy("Suspend or restore"),
            "staff_suspend_account",
            StatusForm,
            _status,
        ),
    ]
}


def offered_actions(user) -> list[StaffAction]:
    return [action for action in ACTIONS.values() if user.has_perm(f"console.{action.permission}")]


def _require(user, codename: str) -> None:
    if not user.has_perm(f"console.{codename}"):
        raise PermissionDenied


def _confirm_page(request, model_admin, account, form, title, action_url, status=200):
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": Account._meta,
        "original": account,
        "title": title,
        "form": form,
        "action_url": action_url,
        "change_url": reverse("admin:console_account_change", args=[account.pk]),
    }
    return TemplateResponse(
        request, "admin/console/account/staff_action.html", context, status=status
    )


def _is_id(text: str) -> bool:
    """A database id in a URL: ASCII digits only ("²".isdigit() is true, int() refuses it)."""
    return text.isascii() and text.isdigit() and len(text) <= 18


def staff_action_view(request, model_admin, object_id: str, slug: str):
    """GET: the confirmation page; POST: validate, perform through the service, redirect."""
    action = ACTIONS.get(slug)
    if action is None:
        raise PermissionDenied
    _require(request.user, action.permission)
    account = get_object_or_404(Account, pk=object_id) if _is_id(object_id) else None
    if account is None:
        raise PermissionDenied
    title = f"{action.title}: {account.name}"
    action_url = request.path
    if request.method != "POST":
        return _confirm_page(
            request, model_admin, account, action.form(account=account), title, action_url
        )
    form = action.form(request.POST, account=account)
    if form.is_valid():
        try:
            message = action.perform(request, account, form.cleaned_data)
        except ServiceError as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, message)
            return redirect("admin:console_account_change", account.pk)
    return _confirm_page(request, model_admin, account, form, title, action_url, status=422)


def revoke_key_view(request, model_admin, object_id: str, key_id: str):
    _require(request.user, "staff_revoke_key")
    if not all(_is_id(text) for text in (object_id, key_id)):
        raise PermissionDenied
    key = get_object_or_404(
        ApiKey.objects.select_related("account"), pk=key_id, account_id=object_id
    )
    account = key.account
    title = _("Revoke key %(label)s (%(mask)s): %(account)s") % {
        "label": key.label,
        "mask": key.mask,
        "account": account.name,
    }
    if request.method != "POST":
        return _confirm_page(
            request, model_admin, account, RevokeForm(account=account), title, request.path
        )
    form = RevokeForm(request.POST, account=account)
    if form.is_valid():
        api_key_revoke(
            key=key, actor=request.user, actor_kind=STAFF, reason=form.cleaned_data["reason"]
        )
        messages.success(request, _("Key %(mask)s revoked.") % {"mask": key.mask})
        return redirect("admin:console_account_change", account.pk)
    return _confirm_page(request, model_admin, account, form, title, request.path, status=422)


# --- Finance exports ------------------------------------------------------------------------


class ExportForm(forms.Form):
    month = forms.CharField(
        label=gettext_lazy("Month"),
        widget=forms.TextInput(attrs={"type": "month", "placeholder": "2026-01"}),
    )
    kind = forms.ChoiceField(label=gettext_lazy("Export"), choices=list(KINDS.items()))

    def clean_month(self):
        text = self.cleaned_data["month"].strip()
        try:
            year, month = (int(part) for part in text.split("-"))
            return date(year, month, 1)
        except ValueError as error:
            raise forms.ValidationError(_("Enter a month like 2026-01.")) from error


def finance_export_view(request, model_admin):
    """A month chooser; with a month and a kind, the CSV download (read-only, so GET)."""
    _require(request.user, "staff_export_finance")
    form = ExportForm(request.GET or None, initial={"month": f"{timezone.now():%Y-%m}"})
    if form.is_bound and form.is_valid():
        month, kind = form.cleaned_data["month"], form.cleaned_data["kind"]
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{kind}-{month:%Y-%m}.csv"'
        csv.writer(response).writerows(finance_export_rows(kind=kind, month=month))
        return response
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": Account._meta,
        "title": _("Finance exports"),
        "form": form,
    }
    return TemplateResponse(
        request,
        "admin/console/account/finance_export.html",
        context,
        status=400 if form.is_bound else 200,
    )
