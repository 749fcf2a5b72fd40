"""Billing documents: receipts (recharges and plan purchases), invoices (request, list, PDF)
and monthly statements (list, generate, CSV and PDF). Owner, admin and finance only, like
every money page."""

import re
from datetime import date

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from billing import documents, invoices, payments, receipts, selectors, statements
from billing.forms import InvoiceRequestForm, StatementForm
from billing.invoices import Buyer
from billing.models import Invoice, LedgerEntry, Statement
from billing.selectors import current_month
from console.http import client_ip
from console.services import ServiceError
from console.tenancy import account_object_or_404, account_view


def _pdf(request, render_document, filename: str):
    """The PDF as a download, or a page that says PDFs are unavailable on this server."""
    try:
        pdf = render_document()
    except documents.PdfUnavailable:
        return render(request, "billing/pdf_unavailable.html", status=503)
    response = HttpResponse(pdf, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@account_view("billing.view")
@require_GET
def receipt(request, entry_id: int):
    entry = account_object_or_404(
        LedgerEntry.objects.filter(kind__in=receipts.RECEIPT_KINDS), request.account, pk=entry_id
    )
    document = receipts.receipt_for(entry=entry)
    return _pdf(
        request,
        lambda: documents.receipt_pdf(document, request.account),
        f"receipt-{document.number}.pdf",
    )


# --- Invoices -------------------------------------------------------------------------------


def _invoices_page(request, form=None, *, status=200):
    account = request.account
    profile = payments.billing_profile(account=account)
    totals = selectors.paid_totals(account=account)
    return render(
        request,
        "billing/invoices.html",
        {
            "invoices": invoices.invoice_list(account=account),
            "totals": totals,
            "form": form
            or InvoiceRequestForm(
                initial={
                    **InvoiceRequestForm.initial_from(Buyer.from_profile(profile)),
                    "title": profile.invoice_title or account.name,
                    "amount": totals.invoiceable_nano or None,
                }
            ),
        },
        status=status,
    )


@account_view("billing.view")
@require_GET
def invoice_list(request):
    return _invoices_page(request)


@account_view("billing.manage")
@require_POST
def invoice_request(request):
    account = request.account
    form = InvoiceRequestForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        buyer = form.buyer()
        try:
            invoice = invoices.invoice_request(
                account=account,
                amount_nano=data["amount"],
                buyer=buyer,
                actor=request.user,
                ip=client_ip(request),
            )
        except ServiceError as error:
            form.add_error(None, str(error))
        else:
            if data["save_details"]:
                profile = payments.billing_profile(account=account)
                invoices.billing_profile_update(
                    account=account,
                    buyer=buyer,
                    invoice_email=profile.invoice_email,
                    actor=request.user,
                    ip=client_ip(request),
                )
            messages.success(request, _("Invoice %(number)s issued.") % {"number": invoice.number})
            return redirect("billing:invoices")
    return _invoices_page(request, form, status=422)


@account_view("billing.view")
@require_GET
def invoice_pdf(request, invoice_id: int):
    invoice = account_object_or_404(
        Invoice.objects.select_related("reverses", "reversal"), request.account, pk=invoice_id
    )
    return _pdf(request, lambda: documents.invoice_pdf(invoice), f"invoice-{invoice.number}.pdf")


# --- Statements -----------------------------------------------------------------------------


def _month_or_404(text: str) -> date:
    match = re.fullmatch(r"(\d{4})-(\d{2})", text)
    if not match or not 1 <= int(match[2]) <= 12 or not 2000 <= int(match[1]) <= 2999:
        raise Http404
    return date(int(match[1]), int(match[2]), 1)


@account_view("billing.view")
@require_GET
def statement_list(request):
    account = request.account
    stored = {s.month: s for s in Statement.objects.filter(account=account)}
    months = statements.statement_months(account=account)
    this_month = current_month(account=account)
    rows = [
        {"month": month, "statement": stored.get(month), "current": month == this_month}
        for month in months
    ]
    missing = [row["month"] for row in rows if not row["statement"] and not row["current"]]
    return render(
        request,
        "billing/statements.html",
        {"rows": rows, "form": StatementForm(months=missing) if missing else None},
    )


@account_view("billing.manage")
@require_POST
def statement_generate(request):
    account = request.account
    months = [
        month
        for month in statements.statement_months(account=account)
        if month < current_month(account=account)
    ]
    form = StatementForm(request.POST, months=months)
    if form.is_valid():
        month = _month_or_404(form.cleaned_data["month"])
        statements.statement_generate(account=account, month=month)
        messages.success(
            request, _("The statement for %(month)s is ready.") % {"month": f"{month:%Y-%m}"}
        )
    else:
        messages.error(request, _("Choose a month that has ended."))
    return redirect("billing:statements")


def _statement_data(request, month_text: str) -> tuple[dict, bool]:
    """A stored statement, or the current month so far (never stored)."""
    account = request.account
    month = _month_or_404(month_text)
    if month == current_month(account=account):
        return statements.statement_data(account=account, month=month), True
    statement = Statement.objects.filter(account=account, month=month).first()
    if statement is None:
        raise Http404
    return statement.data, False


@account_view("billing.view")
@require_GET
def statement_csv(request, month: str):
    data, partial = _statement_data(request, month)
    response = HttpResponse(statements.statement_csv(data), content_type="text/csv; charset=utf-8")
    suffix = "-so-far" if partial else ""
    response["Content-Disposition"] = f'attachment; filename="statement-{month}{suffix}.csv"'
    return response


@account_view("billing.view")
@require_GET
def statement_pdf(request, month: str):
    data, partial = _statement_data(request, month)
    suffix = "-so-far" if partial else ""
    return _pdf(
        request,
        lambda: documents.statement_pdf(data, partial=partial),
        f"statement-{month}{suffix}.pdf",
    )
