from django.core.management.base import BaseCommand, CommandError

from billing.services import pack_grant
from console.models import Account
from console.services import ServiceError


class Command(BaseCommand):
    help = "Grant an account a resource pack. Idempotent on --reference."

    def add_arguments(self, parser):
        parser.add_argument("--account", required=True, type=int)
        parser.add_argument("--tokens", required=True, type=int)
        parser.add_argument("--model", default="", help="Empty: any model.")
        parser.add_argument("--days", default=30, type=int)
        parser.add_argument("--reference", required=True)
        parser.add_argument("--reason", default="")

    def handle(self, *args, account, tokens, model, days, reference, reason, **options):
        account_obj = Account.objects.filter(pk=account).first()
        if account_obj is None:
            raise CommandError(f"No account with id {account}.")
        try:
            pack, replayed = pack_grant(
                account=account_obj,
                tokens=tokens,
                model=model,
                days=days,
                reference=reference,
                reason=reason,
            )
        except ServiceError as error:
            raise CommandError(str(error)) from error
        prefix = "Already granted" if replayed else "Granted"
        self.stdout.write(
            f"{prefix}: pack {pack.pk} of {pack.tokens_total:,} tokens "
            f"({pack.model or 'any model'}) to account {account_obj.pk}, "
            f"expires {pack.expires_at:%Y-%m-%d %H:%M} UTC, reference {reference!r}."
        )
