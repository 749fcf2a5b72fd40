"""PDF documents: receipts, invoices and statements, rendered by WeasyPrint from templates
in `templates/billing/pdf/`. The documents are bilingual (Chinese, then English), as
Chinese invoices and receipts are, whatever the reader's interface language.

WeasyPrint needs Pango (Debian: libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0).
Without Pango the import fails; the pages then say that PDFs are unavailable instead of
failing with a 500. Chinese needs a CJK font, which a fresh machine lacks (Chinese then prints
as blank boxes with no text layer): the documents bring their own, Noto Sans SC from the
`pylopdf-fonts-zh-cn` package (OFL-1.1), loaded through @font-face, so they are legible
wherever the dependencies are installed, whatever fonts the system has.
"""

import logging
from functools import cache

import pylopdf_fonts_zh_cn
from django.conf import settings
from django.template.loader import render_to_string
from django.utils import translation

from billing.invoices import amount_in_chinese
from billing.receipts import PlanReceipt

logger = logging.getLogger(__name__)


class PdfUnavailable(RuntimeError):
    """WeasyPrint (or the system libraries it needs) is not installed here."""


@cache
def cjk_font_url() -> str:
    """The bundled Noto Sans SC as a file:// URL for the templates' @font-face."""
    return pylopdf_fonts_zh_cn.sans_path().resolve().as_uri()


def render_pdf(template: str, context: dict) -> bytes:
    try:
        import weasyprint
    except (ImportError, OSError) as error:
        logger.error("PDF rendering unavailable: %s", error)
        raise PdfUnavailable(str(error)) from error
    # Numbers and dates in the documents are not localised: they are legal text.
    with translation.override("en"):
        html = render_to_string(
            template,
            {**context, "seller_default": settings.SELLER, "cjk_font_url": cjk_font_url()},
        )
    return weasyprint.HTML(string=html).write_pdf()


def invoice_pdf(invoice) -> bytes:
    return render_pdf(
        "billing/pdf/invoice.html",
        {
            "invoice": invoice,
            "words": amount_in_chinese(invoice.amount_nano) if invoice.currency == "CNY" else "",
        },
    )


def receipt_pdf(receipt, account) -> bytes:
    template = (
        "billing/pdf/plan_receipt.html"
        if isinstance(receipt, PlanReceipt)
        else "billing/pdf/receipt.html"
    )
    return render_pdf(template, {"receipt": receipt, "account": account})


def statement_pdf(data: dict, *, partial: bool) -> bytes:
    return render_pdf("billing/pdf/statement.html", {"data": data, "partial": partial})
