"""Recharge pages: top up (card or bank transfer) with pending, success and decline states,
a payment's status, saved cards, and the billing settings (invoice details, auto-recharge).
Card numbers and security codes are sensitive POST parameters: error reports never show
them, and the forms never render them back."""

from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing import payments, selectors
from billing.forms import AutoRechargeForm, CardForm, InvoiceDetailsForm, RechargeForm
from billing.invoices import Buyer, billing_profile_update
from billing.models import Payment, PaymentMethod
from console.http import client_ip, form_status
from console.services import ServiceError
from console.tenancy import account_object_or_404, account_view

CARD_PARAMETERS = ("number", "cvc", "card-number", "card-cvc")


def _recharge_page(request, form=None, *, status=200, payment=None):
    account = request.account
    cards = list(payments.payment_methods_chargeable(account=account))
    return render(
        request,
        "billing/recharge.html",
        {
            "form": form or RechargeForm(cards=cards),
            "payment": payment,
            "history": payments.payment_history(account=account, limit=20),
            "promotions": payments.promotions_active(currency=account.currency),
            "minimum_nano": payments.recharge_minimum_nano(account.currency),
            "balance": selectors.balance(account=account),
            "seller": settings.SELLER,
        },
        status=status,
    )


@account_view("billing.view")
@require_GET
def recharge(request):
    return _recharge_page(request)


@account_view("billing.manage")
@require_POST
@never_cache
@sensitive_post_parameters(*CARD_PARAMETERS)
@sensitive_variables("form")
def recharge_start(request):
    account = request.account
    # Only cards the configured provider can charge are choices (a sandbox card is not, after
    # a switch to another provider); the service refuses the others too.
    form = RechargeForm(
        request.POST, cards=list(payments.payment_methods_chargeable(account=account))
    )
    if form.is_valid():
        try:
            payment = _start(request, form)
        except ServiceError as error:
            form.add_error(None, str(error))
        else:
            if request.htmx:
                return render(
                    request,
                    "billing/recharge.html#result",
                    {"payment": payment, "seller": settings.SELLER},
                )
            return redirect("billing:payment", payment_id=payment.pk)
    if request.htmx:
        return render(request, "billing/recharge.html#form", {"form": form}, status=422)
    return _recharge_page(request, form, status=422)


@sensitive_variables("form", "details")
def _start(request, form) -> Payment:
    account, amount = request.account, form.cleaned_data["amount"]
    method = form.cleaned_data["method"]
    if method == RechargeForm.BANK_TRANSFER:
        return payments.payment_start_bank_transfer(
            account=account, amount_nano=amount, actor=request.user
        )
    card = form.saved_card
    new_card = card is None
    if new_card:
        # Refuse a bad amount before the new card is saved: nothing changes on a refusal.
        payments.check_recharge_amount(account=account, amount_nano=amount)
        details = form.card_form.cleaned_data
        card = payments.payment_method_add(
            account=account,
            number=details["number"],
            exp_month=details["exp_month"],
            exp_year=details["exp_year"],
            cvc=details["cvc"],
            actor=request.user,
            ip=client_ip(request),
        )
    payment = payments.payment_start_card(
        account=account, amount_nano=amount, payment_method=card, actor=request.user
    )
    if new_card and payment.status == Payment.Status.DECLINED:
        # A card refused on its first charge is not kept as a payment method.
        payments.payment_method_remove(method=card, actor=request.user, ip=client_ip(request))
    return payment


@account_view("billing.view")
@require_GET
def payment_detail(request, payment_id: int):
    payment = account_object_or_404(
        Payment.objects.select_related("payment_method", "promotion"),
        request.account,
        pk=payment_id,
    )
    template = "billing/payment.html#status" if request.htmx else "billing/payment.html"
    return render(request, template, {"payment": payment, "seller": settings.SELLER})


@account_view("billing.manage")
@require_POST
def payment_cancel(request, payment_id: int):
    payment = account_object_or_404(Payment, request.account, pk=payment_id)
    try:
        payments.payment_cancel(payment=payment, actor=request.user, ip=client_ip(request))
    except ServiceError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, _("The bank transfer was cancelled."))
    return redirect("billing:payment", payment_id=payment.pk)


# --- Saved cards ----------------------------------------------------------------------------


def _cards_page(request, form=None, *, status=200):
    return render(
        request,
        "billing/cards.html",
        {
            "cards": payments.payment_methods(account=request.account),
            "provider_name": payments.card_provider().name,
            "form": form or CardForm(),
        },
        status=status,
    )


@account_view("billing.view")
@require_GET
def cards(request):
    return _cards_page(request)


@account_view("billing.manage")
@require_POST
@never_cache
@sensitive_post_parameters(*CARD_PARAMETERS)
@sensitive_variables("form", "data")
def card_add(request):
    form = CardForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            card = payments.payment_method_add(
                account=request.account,
                number=data["number"],
                exp_month=data["exp_month"],
                exp_year=data["exp_year"],
                cvc=data["cvc"],
                make_default=data["make_default"],
                actor=request.user,
                ip=client_ip(request),
            )
        except ServiceError as error:
            form.add_error("number", str(error))
        else:
            messages.success(request, _("Saved %(card)s.") % {"card": card})
            return redirect("billing:cards")
    return _cards_page(request, form, status=form_status(form))


def _live_card(request, card_id: int) -> PaymentMethod:
    return account_object_or_404(
        PaymentMethod.objects.filter(removed_at__isnull=True), request.account, pk=card_id
    )


@account_view("billing.manage")
@require_POST
def card_default(request, card_id: int):
    card = _live_card(request, card_id)
    payments.payment_method_set_default(method=card, actor=request.user, ip=client_ip(request))
    messages.success(request, _("%(card)s is now the default card.") % {"card": card})
    return redirect("billing:cards")


@account_view("billing.manage")
@require_http_methods(["GET", "POST"])
def card_remove(request, card_id: int):
    card = _live_card(request, card_id)
    profile = payments.billing_profile(account=request.account)
    if request.method == "POST":
        payments.payment_method_remove(method=card, actor=request.user, ip=client_ip(request))
        messages.success(request, _("Removed %(card)s.") % {"card": card})
        return redirect("billing:cards")
    last = payments.payment_methods(account=request.account).count() == 1
    return render(
        request,
        "billing/card_remove.html",
        {"card": card, "stops_auto_recharge": last and profile.auto_recharge_enabled},
    )


# --- Billing settings -----------------------------------------------------------------------


def _settings_page(request, *, details_form=None, auto_form=None, status=200):
    account = request.account
    profile = payments.billing_profile(account=account)
    return render(
        request,
        "billing/settings.html",
        {
            "profile": profile,
            "details_form": details_form
            or InvoiceDetailsForm(
                initial={
                    **InvoiceDetailsForm.initial_from(Buyer.from_profile(profile)),
                    "invoice_email": profile.invoice_email,
                }
            ),
            "auto_form": auto_form
            or AutoRechargeForm(
                initial={
                    "enabled": profile.auto_recharge_enabled,
                    "threshold": profile.auto_recharge_threshold_nano,
                    "amount": profile.auto_recharge_amount_nano,
                    "monthly_limit": profile.auto_recharge_monthly_limit_nano,
                }
            ),
            "default_card": payments.default_payment_method(account=account),
            "auto_recharged_nano": payments.auto_recharged_this_month(account=account),
        },
        status=status,
    )


@account_view("billing.view")
@require_GET
def billing_settings(request):
    return _settings_page(request)


@account_view("billing.manage")
@require_POST
def invoice_details_save(request):
    form = InvoiceDetailsForm(request.POST)
    if form.is_valid():
        try:
            billing_profile_update(
                account=request.account,
                buyer=form.buyer(),
                invoice_email=form.cleaned_data["invoice_email"],
                actor=request.user,
                ip=client_ip(request),
            )
        except ServiceError as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, _("Invoice details saved."))
            return redirect("billing:settings")
    return _settings_page(request, details_form=form, status=422)


@account_view("billing.manage")
@require_POST
def auto_recharge_save(request):
    form = AutoRechargeForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            payments.auto_recharge_configure(
                account=request.account,
                enabled=data["enabled"],
                threshold_nano=data["threshold"],
                amount_nano=data["amount"],
                monthly_limit_nano=data["monthly_limit"],
                actor=request.user,
                ip=client_ip(request),
            )
        except ServiceError as error:
            form.add_error(None, str(error))
        else:
            messages.success(
                request,
                _("Auto-recharge is on.") if data["enabled"] else _("Auto-recharge is off."),
            )
            return redirect("billing:settings")
    return _settings_page(request, auto_form=form, status=422)
