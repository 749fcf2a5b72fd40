"""Billing pages: the balance, transactions (filter, keyset pages, CSV) and resource packs."""

import csv
import zoneinfo
from datetime import datetime, time, timedelta

from django import forms
from django.contrib import messages
from django.http import StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from billing import selectors, services
from billing.models import LedgerEntry, PackProduct, ResourcePack
from billing.payments import billing_profile
from console.money import decimal_string
from console.services import ServiceError
from console.spreadsheet import csv_cell
from console.tenancy import account_view, object_or_404


class TransactionFilter(forms.Form):
    kind = forms.ChoiceField(
        label=gettext_lazy("Type"),
        required=False,
        choices=[("", gettext_lazy("All types")), *LedgerEntry.Kind.choices],
    )
    since = forms.DateField(
        label=gettext_lazy("From"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        label=gettext_lazy("To"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    before = forms.CharField(required=False, widget=forms.HiddenInput, max_length=64)

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("since") and cleaned.get("until") and cleaned["since"] > cleaned["until"]:
            raise forms.ValidationError(gettext_lazy("The start date is after the end date."))
        return cleaned


def _cursor(text: str) -> tuple[datetime, int] | None:
    """`<iso time>_<id>`, as the page's "older" link writes it; anything else is ignored."""
    at_text, _sep, pk_text = (text or "").rpartition("_")
    at = parse_datetime(at_text) if at_text else None
    if at is None or not pk_text.isdigit() or len(pk_text) > 18:
        return None
    return at, int(pk_text)


def _filters(request):
    form = TransactionFilter(request.GET or None)
    zone = zoneinfo.ZoneInfo(request.account.time_zone)
    since = until = before = None
    kind = None
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        kind = data["kind"] or None
        if data["since"]:
            since = datetime.combine(data["since"], time.min, tzinfo=zone)
        if data["until"]:
            until = datetime.combine(data["until"] + timedelta(days=1), time.min, tzinfo=zone)
        before = _cursor(data["before"])
    return form, {"kind": kind, "since": since, "until": until}, before


@account_view("billing.view")
@require_GET
def billing_index(request):
    account = request.account
    entries, _cursor_next = selectors.ledger_page(account=account, limit=5)
    return render(
        request,
        "billing/index.html",
        {
            "balance": selectors.balance(account=account),
            "recent": entries,
            "profile": billing_profile(account=account),
        },
    )


@account_view("billing.view")
@require_GET
def transactions(request):
    form, filters, before = _filters(request)
    entries, cursor = selectors.ledger_page(account=request.account, before=before, **filters)
    query = request.GET.copy()
    query.pop("before", None)
    next_query = None
    if cursor:
        query["before"] = f"{cursor[0].isoformat()}_{cursor[1]}"
        next_query = query.urlencode()
    context = {"form": form, "entries": entries, "next_query": next_query}
    template = "billing/transactions.html#rows" if request.htmx else "billing/transactions.html"
    return render(request, template, context, status=200 if not form.errors else 422)


@account_view("billing.view")
@require_GET
def transactions_csv(request):
    """Every entry the filters select, streamed page by page (keyset), never all in memory."""
    _form, filters, _before = _filters(request)
    account = request.account

    def rows():
        yield [
            "time",
            "kind",
            "currency",
            "recharge_change",
            "bonus_change",
            "arrears_change",
            "fee",
            "model",
            "input_tokens",
            "output_tokens",
            "pack_tokens",
            "project",
            "request_id",
            "reference",
        ]
        before = None
        while True:
            entries, before = selectors.ledger_page(
                account=account, before=before, limit=500, **filters
            )
            for entry in entries:
                yield [
                    entry.created_at.isoformat(),
                    entry.kind,
                    account.currency,
                    decimal_string(entry.recharge_delta_nano),
                    decimal_string(entry.bonus_delta_nano),
                    decimal_string(entry.arrears_delta_nano),
                    decimal_string(entry.fee_nano),
                    csv_cell(entry.model),
                    entry.input_tokens,
                    entry.output_tokens,
                    sum(c.input_tokens + c.output_tokens for c in entry.consumptions.all()),
                    csv_cell(entry.project.name if entry.project else ""),
                    csv_cell(entry.request_id),
                    csv_cell(entry.reference),
                ]
            if before is None:
                return

    class Echo:
        def write(self, value):
            return value

    writer = csv.writer(Echo())
    response = StreamingHttpResponse(
        (writer.writerow(row) for row in rows()), content_type="text/csv; charset=utf-8"
    )
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="transactions-{stamp}.csv"'
    return response


@account_view("billing.view")
@require_GET
def packs(request):
    account = request.account
    owned = ResourcePack.objects.filter(account=account).order_by("closed_at", "expires_at", "pk")
    now = timezone.now()
    return render(
        request,
        "billing/packs.html",
        {
            "packs": owned,
            "now": now,
            "products": PackProduct.objects.filter(active=True).order_by("tokens"),
            "balance": selectors.balance(account=account),
        },
    )


@account_view("billing.manage")
@require_POST
def buy_pack(request, product_id: int):
    product = object_or_404(PackProduct.objects.filter(active=True), pk=product_id)
    try:
        pack = services.pack_buy(account=request.account, product=product, actor=request.user)
    except ServiceError as error:
        messages.error(request, str(error))
    else:
        messages.success(
            request,
            _("Bought %(name)s: %(tokens)s tokens.")
            % {"name": pack.name, "tokens": f"{pack.tokens_total:,}"},
        )
    return redirect("billing:packs")
