from django.core.management.base import BaseCommand, CommandError

from billing.models import Payment
from billing.payments import payment_confirm_bank_transfer
from console.models import User
from console.money import format_amount
from console.services import ServiceError


class Command(BaseCommand):
    help = (
        "Staff: a bank transfer arrived. Credits the pending transfer with this reference "
        "(the code in its memo), with its promotion bonus. Confirming twice changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("reference", help="The transfer's reference, e.g. BT7Q3K9XW2AB")
        parser.add_argument("--staff", required=True, help="The staff user's email")
        parser.add_argument("--reason", default="", help="e.g. the bank statement line")

    def handle(self, *args, reference, staff, reason, **options):
        payment = Payment.objects.filter(
            method=Payment.Method.BANK_TRANSFER, reference=reference.strip().upper()
        ).first()
        if payment is None:
            raise CommandError(f"No bank transfer with reference {reference!r}.")
        user = User.objects.filter(email__iexact=staff, is_staff=True).first()
        if user is None:
            raise CommandError(f"No staff user {staff!r}.")
        try:
            payment = payment_confirm_bank_transfer(payment=payment, actor=user, reason=reason)
        except ServiceError as error:
            raise CommandError(str(error)) from error
        bonus = (
            f" + bonus {format_amount(payment.bonus_nano, payment.currency)}"
            if payment.bonus_nano
            else ""
        )
        self.stdout.write(
            f"Confirmed {payment.reference}: {format_amount(payment.amount_nano, payment.currency)}"
            f"{bonus} credited to account {payment.account_id}."
        )
