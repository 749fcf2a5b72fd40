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

from billing.models import Payment
from billing.payments import payment_methods_chargeable
from billing.selectors import balance
from console.services import ServiceError
from console.tenancy import account_view
from plans.charts import plan_usage_chart
from plans.models import Period, Plan
from plans.quota import quota_status
from plans.selectors import (
    PLAN_USAGE_SPANS,
    plan_offers,
    plan_payments_pending,
    subscription_renewal,
)
from plans.services import (
    plan_downgrade_cancel,
    plan_downgrade_schedule,
    plan_set_auto_renew,
    plan_subscribe,
    plan_subscribe_by_card,
    plan_upgrade,
    plan_upgrade_by_card,
    upgrade_price,
)

# The chart's range when the page is opened: the window that binds first.
DEFAULT_SPAN = "5h"


class PayForm(forms.Form):
    """How a plan is paid: "balance", or "card-<id>" for one of the account's saved cards
    the provider can charge (the page offers those only)."""

    pay = forms.ChoiceField(label=gettext_lazy("Pay with"), required=False)

    def __init__(self, *args, account, **kwargs):
        super().__init__(*args, **kwargs)
        self.cards = {
            f"card-{card.pk}": card for card in payment_methods_chargeable(account=account)
        }
        self.fields["pay"].choices = [("balance", _("Balance"))] + [
            (value, str(card)) for value, card in self.cards.items()
        ]

    def card(self):
        """The saved card chosen, or None for the balance (also when nothing was chosen)."""
        return self.cards.get(self.cleaned_data.get("pay") or "balance")


class SubscribeForm(PayForm):
    plan = forms.ModelChoiceField(
        queryset=Plan.objects.all(), to_field_name="code", label=gettext_lazy("Plan")
    )
    period = forms.ChoiceField(choices=Period.choices, label=gettext_lazy("Period"))

    def __init__(self, data, **kwargs):
        # The page's buttons send the plan and period as one value ("lite:month").
        if data is not None and "offer" in data:
            data = data.copy()
            data["plan"], _sep, data["period"] = data["offer"].partition(":")
        super().__init__(data, **kwargs)


class UpgradeForm(PayForm):
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
    span = request.GET.get("range")
    if span not in PLAN_USAGE_SPANS:
        span = DEFAULT_SPAN  # a missing or unknown range: nothing to warn about
    chart = plan_usage_chart(account=account, span=span) if status else None
    if request.htmx:
        # The range switch swaps the chart region only (empty without a plan).
        return render(request, "plans/subscription.html#plan_usage", {"chart": chart})
    offers = plan_offers(currency=account.currency)
    coding_path = reverse("gateway_coding_models").removesuffix("models")
    return render(
        request,
        "plans/subscription.html",
        {
            "status": status,
            "chart": chart,
            "offers": offers,
            "upgrades": _upgrade_quotes(status, offers),
            "downgrades": _downgrade_choices(status, offers),
            "renewal": subscription_renewal(status.subscription) if status else None,
            "balance": balance(account=account),
            "coding_base_url": request.build_absolute_uri(coding_path),
            "pay_form": PayForm(account=account),
            "pending_payments": plan_payments_pending(account=account),
        },
    )


@account_view("billing.manage")
@require_POST
def subscribe(request):
    form = SubscribeForm(request.POST, account=request.account)
    if not form.is_valid():
        messages.error(request, _("Choose a plan, a period and how to pay."))
        return redirect("plans:subscription")
    plan, card = form.cleaned_data["plan"], form.card()
    try:
        if card is None:
            plan_subscribe(
                account=request.account,
                plan=plan,
                period=form.cleaned_data["period"],
                actor=request.user,
            )
        else:
            payment = plan_subscribe_by_card(
                account=request.account,
                plan=plan,
                period=form.cleaned_data["period"],
                card=card,
                actor=request.user,
            )
            if not _card_paid(request, payment):
                return redirect("plans:subscription")
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


def _card_paid(request, payment) -> bool:
    """Say what became of a card payment that did not simply succeed; True when it did."""
    if payment is None or (
        payment.status == Payment.Status.SUCCEEDED and not payment.failure_message
    ):
        return True
    if payment.is_pending:
        messages.info(
            request,
            _("Your card payment is being confirmed: the plan changes as soon as it is."),
        )
    elif payment.status == Payment.Status.SUCCEEDED:
        messages.warning(request, payment.failure_message)
    else:
        messages.error(
            request,
            _("The card payment failed: %(reason)s") % {"reason": payment.failure_message},
        )
    return False


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
    form = UpgradeForm(request.POST, account=request.account)
    if not form.is_valid():
        messages.error(request, _("Choose a plan to upgrade to."))
        return redirect("plans:subscription")
    plan, card = form.cleaned_data["plan"], form.card()
    try:
        if card is None:
            plan_upgrade(account=request.account, plan=plan, actor=request.user)
        else:
            payment = plan_upgrade_by_card(
                account=request.account, plan=plan, card=card, actor=request.user
            )
            if not _card_paid(request, payment):
                return redirect("plans:subscription")
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
