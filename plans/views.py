"""The subscription page (BigModel's "Subscription", beside API keys): the three plans in the
account's currency with their periods and savings, and for a subscriber the plan, its
renewal, the price locked in, cancel or resume, a downgrade scheduled for the renewal, and
each quota's use. Everyone who reads usage reads it; buying, upgrading, scheduling a
downgrade, cancelling and resuming move money (now or at renewal) and need
`billing.manage`."""

from django import forms
from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.timezone import localtime
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from billing.selectors import balance
from console.services import ServiceError
from console.tenancy import account_view
from plans.models import Period, Plan
from plans.quota import quota_status
from plans.selectors import plan_offers, subscription_renewal
from plans.services import (
    plan_downgrade_cancel,
    plan_downgrade_schedule,
    plan_set_auto_renew,
    plan_subscribe,
    plan_upgrade,
    upgrade_price,
)


class SubscribeForm(forms.Form):
    plan = forms.ModelChoiceField(
        queryset=Plan.objects.all(), to_field_name="code", label=gettext_lazy("Plan")
    )
    period = forms.ChoiceField(choices=Period.choices, label=gettext_lazy("Period"))


class UpgradeForm(forms.Form):
    plan = forms.ModelChoiceField(queryset=Plan.objects.all(), to_field_name="code")


class DowngradeForm(forms.Form):
    plan = forms.ModelChoiceField(queryset=Plan.objects.all(), to_field_name="code")
    period = forms.ChoiceField(choices=Period.choices)


class AutoRenewForm(forms.Form):
    on = forms.TypedChoiceField(
        choices=[("1", "on"), ("0", "off")], coerce=lambda value: value == "1"
    )


@account_view("usage.view")
@require_GET
def subscription(request):
    account = request.account
    status = quota_status(account)
    offers = plan_offers(currency=account.currency)
    coding_path = reverse("gateway_coding_models").removesuffix("models")
    return render(
        request,
        "plans/subscription.html",
        {
            "status": status,
            "offers": offers,
            "upgrades": _upgrade_quotes(status, offers),
            "downgrades": _downgrade_choices(status, offers),
            "renewal": subscription_renewal(status.subscription) if status else None,
            "balance": balance(account=account),
            "coding_base_url": request.build_absolute_uri(coding_path),
        },
    )


@account_view("billing.manage")
@require_POST
def subscribe(request):
    form = SubscribeForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choose a plan and a period."))
        return redirect("plans:subscription")
    plan = form.cleaned_data["plan"]
    try:
        plan_subscribe(
            account=request.account,
            plan=plan,
            period=form.cleaned_data["period"],
            actor=request.user,
        )
    except ServiceError as error:
        messages.error(request, str(error))
    else:
        messages.success(
            request,
            _(
                "You are on the GLM Coding Plan %(plan)s. Point your coding tool at the coding "
                "endpoint below."
            )
            % {"plan": plan.name},
        )
    return redirect("plans:subscription")


def _upgrade_quotes(status, offers) -> dict[str, int]:
    """What upgrading to each higher plan costs now (plan code → nano), for a plan in force."""
    if status is None or status.subscription.period_end <= timezone.now():
        return {}
    quotes = {}
    for offer in offers:
        try:
            quotes[offer.plan.code], _price = upgrade_price(
                subscription=status.subscription, plan=offer.plan, now=timezone.now()
            )
        except ServiceError:
            continue  # not higher, or not on sale in this period and currency
    return quotes


def _downgrade_choices(status, offers) -> set[str]:
    """The lower plans a plan in force can be scheduled to change to at renewal (codes)."""
    if status is None or status.subscription.period_end <= timezone.now():
        return set()
    current = status.subscription.plan
    return {offer.plan.code for offer in offers if offer.plan.rank < current.rank}


@account_view("billing.manage")
@require_POST
def upgrade(request):
    form = UpgradeForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choose a plan to upgrade to."))
        return redirect("plans:subscription")
    plan = form.cleaned_data["plan"]
    try:
        plan_upgrade(account=request.account, plan=plan, actor=request.user)
    except ServiceError as error:
        messages.error(request, str(error))
    else:
        messages.success(
            request,
            _("Upgraded to %(plan)s: its quotas apply from your next request.")
            % {"plan": plan.name},
        )
    return redirect("plans:subscription")


@account_view("billing.manage")
@require_POST
def auto_renew(request):
    form = AutoRenewForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choose whether the plan renews."))
        return redirect("plans:subscription")
    on = form.cleaned_data["on"]
    try:
        subscription = plan_set_auto_renew(account=request.account, on=on, actor=request.user)
    except ServiceError as error:
        messages.error(request, str(error))
    else:
        if on:
            messages.success(request, _("Your plan renews automatically again."))
        else:
            messages.success(
                request,
                _("Auto-renew is off: your plan runs until %(end)s, then ends.")
                % {"end": date_format(localtime(subscription.period_end), "DATETIME_FORMAT")},
            )
    return redirect("plans:subscription")


@account_view("billing.manage")
@require_POST
def downgrade(request):
    form = DowngradeForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choose a plan and a period to change to."))
        return redirect("plans:subscription")
    plan = form.cleaned_data["plan"]
    try:
        subscription = plan_downgrade_schedule(
            account=request.account,
            plan=plan,
            period=form.cleaned_data["period"],
            actor=request.user,
        )
    except ServiceError as error:
        messages.error(request, str(error))
    else:
        messages.success(
            request,
            _("Your plan changes to %(plan)s when it renews on %(date)s.")
            % {
                "plan": plan.name,
                "date": date_format(localtime(subscription.period_end), "DATETIME_FORMAT"),
            },
        )
    return redirect("plans:subscription")


@account_view("billing.manage")
@require_POST
def downgrade_cancel(request):
    try:
        plan_downgrade_cancel(account=request.account, actor=request.user)
    except ServiceError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, _("The plan change is cancelled: your plan renews as it is."))
    return redirect("plans:subscription")
