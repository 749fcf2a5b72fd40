import json

from django.core.management.base import BaseCommand, CommandError

from billing.selectors import balance, balance_json
from console.models import Account
from console.money import format_amount


class Command(BaseCommand):
    help = "An account's balances and open resource packs."

    def add_arguments(self, parser):
        parser.add_argument("--account", required=True, type=int)
        parser.add_argument("--json", action="store_true", help="One line of JSON.")

    def handle(self, *args, account, **options):
        account_obj = Account.objects.filter(pk=account).first()
        if account_obj is None:
            raise CommandError(f"No account with id {account}.")
        if options["json"]:
            self.stdout.write(json.dumps(balance_json(account=account_obj), ensure_ascii=False))
            return
        current = balance(account=account_obj)
        currency = current.currency
        self.stdout.write(f"Account {account_obj.pk} ({account_obj.name}), {currency}")
        self.stdout.write(f"  recharge {format_amount(current.recharge_nano, currency)}")
        self.stdout.write(f"  bonus    {format_amount(current.bonus_nano, currency)}")
        self.stdout.write(f"  arrears  {format_amount(current.arrears_nano, currency)}")
        for pack in current.packs:
            self.stdout.write(
                f"  pack {pack.pk}: {pack.tokens_remaining:,} tokens of "
                f"{pack.model or 'any model'}, expires {pack.expires_at:%Y-%m-%d %H:%M} UTC"
            )
