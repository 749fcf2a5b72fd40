from django.core.management.base import BaseCommand, CommandError

from billing.payments import payment_record_manual
from console.models import Account
from console.money import AmountError, format_amount, parse_amount
from console.services import ServiceError


class Command(BaseCommand):
    help = (
        "A staff top-up: a paid recharge with method 'manual', plus an optional bonus grant. "
        "Idempotent on --reference: a replay prints the original result and exits 0."
    )

    def add_arguments(self, parser):
        parser.add_argument("--account", required=True, type=int)
        parser.add_argument("--amount", required=True, help="e.g. 100.00")
        parser.add_argument("--bonus", default="", help="An optional bonus, e.g. 20.00")
        parser.add_argument("--reference", required=True)
        parser.add_argument("--reason", default="")

    def handle(self, *args, account, amount, bonus, reference, reason, **options):
        account_obj = Account.objects.filter(pk=account).first()
        if account_obj is None:
            raise CommandError(f"No account with id {account}.")
        try:
            amount_nano = parse_amount(amount)
            bonus_nano = parse_amount(bonus) if bonus else 0
        except AmountError as error:
            raise CommandError(f"Invalid amount: {error}") from error
        try:
            payment, replayed = payment_record_manual(
                account=account_obj,
                amount_nano=amount_nano,
                bonus_nano=bonus_nano,
                reference=reference,
                reason=reason,
            )
        except ServiceError as error:
            raise CommandError(str(error)) from error
        currency = account_obj.currency
        entry = payment.ledger_entry
        prefix = "Already recorded" if replayed else "Recorded"
        bonus_text = (
            f" + bonus {format_amount(payment.bonus_nano, currency)}" if payment.bonus_nano else ""
        )
        self.stdout.write(
            f"{prefix}: recharge {format_amount(payment.amount_nano, currency)}{bonus_text} "
            f"for account {account_obj.pk}, reference {reference!r} (entry {entry.pk}, "
            f"{entry.created_at:%Y-%m-%d %H:%M:%S} UTC)."
        )
