import json

from django.core.management.base import BaseCommand, CommandError

from console.models import Account
from console.money import format_amount
from plans.quota import quota_status
from plans.selectors import subscription_renewal


class Command(BaseCommand):
    help = (
        "Show an account's coding plan: the plan, its period, a change scheduled for the renewal, "
        "and each quota's used / limit / next reset (prompts per 5 hours, week and subscription "
        "month; MCP calls per month)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--account", required=True, type=int)
        parser.add_argument("--json", action="store_true", help="one JSON object, for scripts")

    def handle(self, *args, account, **options):
        account_obj = Account.objects.filter(pk=account).first()
        if account_obj is None:
            raise CommandError(f"No account with id {account}.")
        status = quota_status(account_obj)
        if status is None:
            shown = {"account": account_obj.pk, "plan": None}
        else:
            subscription = status.subscription
            renewal = subscription_renewal(subscription)
            shown = {
                "account": account_obj.pk,
                "plan": subscription.plan.code,
                "period": subscription.period,
                "currency": subscription.currency,
                "price": format_amount(subscription.price_nano, subscription.currency, places=None),
                "auto_renew": subscription.auto_renew,
                "period_end": subscription.period_end.isoformat(),
                # A downgrade taking effect at the renewal (at period_end), at that day's price.
                "scheduled_change": {
                    "plan": renewal.plan.code,
                    "period": renewal.period,
                    "price": format_amount(renewal.price_nano, subscription.currency, places=None),
                    "at": subscription.period_end.isoformat(),
                }
                if renewal.changes
                else None,
                "quotas": [
                    {
                        "window": window.name,
                        # Prompts in thousandths, exactly (a continuation counts 0.067).
                        "used": str(window.used_units),
                        "limit": window.limit,
                        "next_reset": window.next_reset.isoformat() if window.next_reset else None,
                    }
                    for window in status.windows
                ],
            }
        if options["json"]:
            self.stdout.write(json.dumps(shown, ensure_ascii=False))
            return
        if shown["plan"] is None:
            self.stdout.write(f"Account {account_obj.pk} has no coding plan.")
            return
        self.stdout.write(
            f"Account {account_obj.pk}: {shown['plan']} ({shown['period']}, {shown['price']}), "
            f"paid until {shown['period_end']}, auto-renew {'on' if shown['auto_renew'] else 'off'}"
        )
        if change := shown["scheduled_change"]:
            self.stdout.write(
                f"  changes to {change['plan']} ({change['period']}, {change['price']}) "
                f"at {change['at']}"
            )
        for quota in shown["quotas"]:
            used = f"{quota['used']} / {quota['limit']}"
            reset = quota["next_reset"] or "-"
            self.stdout.write(f"  {quota['window']:>5}: {used}, resets {reset}")
