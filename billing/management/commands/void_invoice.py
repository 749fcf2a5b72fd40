from django.core.management.base import BaseCommand, CommandError

from billing.invoices import invoice_void
from billing.models import Invoice
from console.models import User
from console.services import ServiceError


class Command(BaseCommand):
    help = (
        "Staff: void an issued invoice by issuing its reversal (红字发票). The original is "
        "never edited; the reversal has its own number and gives the amount back to the "
        "account's invoiceable total."
    )

    def add_arguments(self, parser):
        parser.add_argument("number", help="The invoice number, e.g. 202600000012")
        parser.add_argument("--staff", required=True, help="The staff user's email")
        parser.add_argument("--reason", required=True)

    def handle(self, *args, number, staff, reason, **options):
        invoice = Invoice.objects.filter(number=number.strip()).first()
        if invoice is None:
            raise CommandError(f"No invoice numbered {number!r}.")
        user = User.objects.filter(email__iexact=staff, is_staff=True).first()
        if user is None:
            raise CommandError(f"No staff user {staff!r}.")
        try:
            reversal = invoice_void(invoice=invoice, actor=user, reason=reason)
        except ServiceError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(f"Voided {invoice.number} with reversal {reversal.number}.")
