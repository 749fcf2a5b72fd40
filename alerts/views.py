"""The spend-alerts settings page (owner, admin and finance): the rules, the channels, and
the alerts sent lately."""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from alerts.forms import AlertSettingsForm
from alerts.services import alert_settings_for, alert_settings_save, recent_firings
from console.tenancy import account_view


@account_view("alerts.manage")
@require_http_methods(["GET", "POST"])
def alert_settings(request):
    account = request.account
    current = alert_settings_for(account)
    form = AlertSettingsForm(request.POST or None, initial=AlertSettingsForm.initial_from(current))
    if request.method == "POST" and form.is_valid():
        alert_settings_save(account=account, actor=request.user, **form.values())
        messages.success(request, _("Alert settings saved."))
        return redirect("alerts:settings")
    status = 422 if form.is_bound and form.errors else 200
    return render(
        request,
        "alerts/alerts.html",
        {"form": form, "firings": recent_firings(account=account)},
        status=status,
    )
