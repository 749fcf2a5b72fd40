from django.core.management.base import BaseCommand, CommandError

from billing.models import Payment
from billing.payments import default_payment_method
from console.models import Account
from console.money import format_amount
from console.services import ServiceError
from plans.models import Period, Plan
from plans.selectors import subscription_current
from plans.services import plan_subscribe, plan_subscribe_by_card


class Command(BaseCommand):
    help = (
        "Subscribe an account to a coding plan at today's price, paid from its balance or "
        "with its default saved card."
    )

    def add_arguments(self, parser):
        parser.add_argument("--account", required=True, type=int)
        parser.add_argument("--plan", required=True, help="lite, pro or max")
        parser.add_argument("--period", required=True, choices=Period.values)
        parser.add_argument("--pay", default="balance", choices=["balance", "card"])

    def handle(self, *args, account, plan, period, pay, **options):
        account_obj = Account.objects.filter(pk=account).first()
        if account_obj is None:
            raise CommandError(f"No account with id {account}.")
        plan_obj = Plan.objects.filter(code=plan.strip().lower()).first()
        if plan_obj is None:
            codes = ", ".join(Plan.objects.values_list("code", flat=True))
            raise CommandError(f"No plan {plan!r}; the plans are {codes}.")
        try:
            if pay == "card":
                subscription = self._by_card(account_obj, plan_obj, period)
            else:
                subscription = plan_subscribe(
                    account=account_obj, plan=plan_obj, period=period, actor=None
                )
        except ServiceError as error:
            raise CommandError(str(error)) from error
        if subscription is None:
            return
        self.stdout.write(
            f"Subscribed account {account_obj.pk} to {plan_obj.name} ({period}) for "
            f"{format_amount(subscription.price_nano, subscription.currency, places=None)}, "
            f"until {subscription.period_end:%Y-%m-%d %H:%M} UTC (subscription "
            f"{subscription.pk}), paid by {pay}."
        )

    def _by_card(self, account, plan, period):
        card = default_payment_method(account=account)
        if card is None:
            raise CommandError(f"Account {account.pk} has no saved card.")
        payment = plan_subscribe_by_card(
            account=account, plan=plan, period=period, card=card, actor=None
        )
        if payment.status == Payment.Status.PENDING:
            self.stdout.write(
                f"Card payment {payment.reference} is pending: the plan starts when it is "
                "confirmed."
            )
            return None
        if payment.status != Payment.Status.SUCCEEDED or payment.failure_message:
            raise CommandError(
                f"Card payment {payment.reference}: {payment.failure_message or payment.status}."
            )
        return subscription_current(account=account)
