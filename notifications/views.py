"""The notification centre (every member, their own notifications) and the webhook pages
(alerts.manage). A webhook's secret is rendered only in the response to an explicit reveal,
marked no-store."""

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from console.http import client_ip
from console.tenancy import account_object_or_404, account_view, object_or_404
from notifications import selectors, services, webhooks
from notifications.forms import EnabledForm, WebhookEndpointForm
from notifications.models import WebhookEndpoint

# --- Notification centre --------------------------------------------------------------------


def _list_url(request) -> str:
    page = request.POST.get("page", "")
    url = reverse("notifications:list")
    return f"{url}?page={page}" if page.isdigit() else url


@account_view("overview.view")
@require_GET
def notification_list(request):
    page = selectors.notification_page(
        user=request.user, account=request.account, number=request.GET.get("page")
    )
    template = "notifications/list.html#inbox" if request.htmx else "notifications/list.html"
    return render(request, template, {"page": page})


@account_view("overview.view")
@require_POST
def notification_read(request, notification_id: int):
    notification = object_or_404(
        selectors.notifications_of(user=request.user, account=request.account),
        pk=notification_id,
    )
    services.notifications_mark_read(
        user=request.user, account=request.account, notification=notification
    )
    if request.htmx:
        notification.refresh_from_db()
        return render(request, "notifications/read.html", {"notification": notification})
    return redirect(_list_url(request))


@account_view("overview.view")
@require_POST
def notification_read_all(request):
    marked = services.notifications_mark_read(user=request.user, account=request.account)
    if request.htmx:
        page = selectors.notification_page(
            user=request.user, account=request.account, number=request.POST.get("page")
        )
        return render(request, "notifications/read.html", {"page": page})
    messages.success(request, _("%(count)s notifications marked read.") % {"count": marked})
    return redirect(_list_url(request))


# --- Webhooks -------------------------------------------------------------------------------


def _endpoint(request, endpoint_id: int) -> WebhookEndpoint:
    return account_object_or_404(
        WebhookEndpoint.objects.select_related("created_by"), request.account, pk=endpoint_id
    )


def _webhook_list(request, *, form=None, status=200):
    context = {
        "endpoints": selectors.webhook_endpoints(account=request.account),
        "form": form or WebhookEndpointForm(),
    }
    return render(request, "notifications/webhooks/list.html", context, status=status)


@sensitive_variables("secret", "context")
def _webhook_detail(request, endpoint, *, secret=None):
    context = {
        "endpoint": endpoint,
        "deliveries": selectors.webhook_deliveries(endpoint=endpoint),
        "secret": secret,
    }
    response = render(request, "notifications/webhooks/detail.html", context)
    if secret is not None:
        response["Cache-Control"] = "no-store"
    return response


@account_view("alerts.manage")
@require_GET
def webhook_list(request):
    return _webhook_list(request)


@account_view("alerts.manage")
@require_POST
def webhook_create(request):
    form = WebhookEndpointForm(request.POST)
    if not form.is_valid():
        return _webhook_list(request, form=form, status=422)
    endpoint = webhooks.webhook_endpoint_create(
        account=request.account,
        url=form.cleaned_data["url"],
        description=form.cleaned_data["description"],
        actor=request.user,
        ip=client_ip(request),
    )
    messages.success(
        request,
        _("Endpoint added. Reveal its signing secret below to verify the deliveries."),
    )
    return redirect("notifications:webhook_detail", endpoint.pk)


@account_view("alerts.manage")
@require_GET
def webhook_detail(request, endpoint_id: int):
    return _webhook_detail(request, _endpoint(request, endpoint_id))


@account_view("alerts.manage")
@require_POST
@never_cache
@sensitive_variables("secret")
def webhook_reveal(request, endpoint_id: int):
    endpoint = _endpoint(request, endpoint_id)
    secret = webhooks.webhook_secret_reveal(
        endpoint=endpoint, actor=request.user, ip=client_ip(request)
    )
    return _webhook_detail(request, endpoint, secret=secret)


@account_view("alerts.manage")
@require_POST
def webhook_rotate(request, endpoint_id: int):
    endpoint = _endpoint(request, endpoint_id)
    webhooks.webhook_secret_rotate(endpoint=endpoint, actor=request.user, ip=client_ip(request))
    messages.success(
        request,
        _(
            "Secret rotated: deliveries are signed with the new one from now on. Reveal it and "
            "update your receiver."
        ),
    )
    return redirect("notifications:webhook_detail", endpoint.pk)


@account_view("alerts.manage")
@require_POST
def webhook_enabled(request, endpoint_id: int):
    endpoint = _endpoint(request, endpoint_id)
    form = EnabledForm(request.POST)
    if not form.is_valid():
        return HttpResponse(_("Choose enabled or disabled."), status=422)
    webhooks.webhook_endpoint_set_enabled(
        endpoint=endpoint,
        enabled=form.cleaned_data["enabled"],
        actor=request.user,
        ip=client_ip(request),
    )
    if endpoint.enabled:
        messages.success(request, _("Endpoint enabled: it receives new events."))
    else:
        messages.success(request, _("Endpoint disabled: it receives no events."))
    return redirect("notifications:webhook_detail", endpoint.pk)


@account_view("alerts.manage")
@require_POST
def webhook_test(request, endpoint_id: int):
    endpoint = _endpoint(request, endpoint_id)
    webhooks.webhook_send_test(endpoint=endpoint, actor=request.user, ip=client_ip(request))
    messages.success(
        request, _("Test event queued: its delivery appears in the log below within seconds.")
    )
    return redirect("notifications:webhook_detail", endpoint.pk)


@account_view("alerts.manage")
@require_http_methods(["GET", "POST"])
def webhook_delete(request, endpoint_id: int):
    endpoint = _endpoint(request, endpoint_id)
    if request.method == "POST":
        webhooks.webhook_endpoint_delete(
            endpoint=endpoint, actor=request.user, ip=client_ip(request)
        )
        messages.success(request, _("Endpoint %(url)s deleted.") % {"url": endpoint.url})
        return redirect("notifications:webhooks")
    return render(request, "notifications/webhooks/delete.html", {"endpoint": endpoint})
