from django.core.management.base import BaseCommand, CommandError

from console.models import Account
from console.money import format_amount
from console.services import ServiceError
from plans.models import Period, Plan
from plans.services import plan_subscribe


class Command(BaseCommand):
    help = (
        "Subscribe an account to a coding plan, paid from its balance at today's price "
        "(card payment comes with the subscription page)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--account", required=True, type=int)
        parser.add_argument("--plan", required=True, help="lite, pro or max")
        parser.add_argument("--period", required=True, choices=Period.values)
        parser.add_argument("--pay", default="balance", choices=["balance"])

    def handle(self, *args, account, plan, period, pay, **options):
        account_obj = Account.objects.filter(pk=account).first()
        if account_obj is None:
            raise CommandError(f"No account with id {account}.")
        plan_obj = Plan.objects.filter(code=plan.strip().lower()).first()
        if plan_obj is None:
            codes = ", ".join(Plan.objects.values_list("code", flat=True))
            raise CommandError(f"No plan {plan!r}; the plans are {codes}.")
        try:
            subscription = plan_subscribe(
                account=account_obj, plan=plan_obj, period=period, actor=None
            )
        except ServiceError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(
            f"Subscribed account {account_obj.pk} to {plan_obj.name} ({period}) for "
            f"{format_amount(subscription.price_nano, subscription.currency, places=None)}, "
            f"until {subscription.period_end:%Y-%m-%d %H:%M} UTC (subscription "
            f"{subscription.pk})."
        )
