from django.core.management.base import BaseCommand, CommandError

from billing.selectors import refundable_nano
from billing.services import refund
from console.models import Account
from console.money import AmountError, format_amount, parse_amount
from console.services import ServiceError


class Command(BaseCommand):
    help = (
        "A staff refund of paid money (recorded; pay it back through the provider or a "
        "transfer). At most min(recharge balance, paid - refunded - invoiced); the bonus that "
        "came with the refunded recharges is clawed back in proportion. Idempotent on "
        "--reference."
    )

    def add_arguments(self, parser):
        parser.add_argument("--account", required=True, type=int)
        parser.add_argument("--amount", required=True, help="e.g. 100.00")
        parser.add_argument("--reference", required=True)
        parser.add_argument("--reason", required=True)

    def handle(self, *args, account, amount, reference, reason, **options):
        account_obj = Account.objects.filter(pk=account).first()
        if account_obj is None:
            raise CommandError(f"No account with id {account}.")
        try:
            amount_nano = parse_amount(amount)
        except AmountError as error:
            raise CommandError(f"Invalid amount: {error}") from error
        try:
            entry, replayed = refund(
                account=account_obj, amount_nano=amount_nano, reference=reference, reason=reason
            )
        except ServiceError as error:
            raise CommandError(str(error)) from error
        currency = account_obj.currency
        prefix = "Already recorded" if replayed else "Recorded"
        self.stdout.write(
            f"{prefix}: refund {format_amount(-entry.recharge_delta_nano, currency)}, bonus "
            f"clawed back {format_amount(-entry.bonus_delta_nano, currency)}, for account "
            f"{account_obj.pk} (entry {entry.pk}). Refundable now: "
            f"{format_amount(refundable_nano(account=account_obj), currency)}."
        )
