import zoneinfo
from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from console.models import Account
from usage.rollups import rollups_rebuild


class Command(BaseCommand):
    help = (
        "Recompute the usage roll-ups (hourly and daily sums) from the usage records: every "
        "account, or one; all of history, or from a date on. Idempotent. On PostgreSQL, "
        "usage writes of every account wait while an account is rebuilt."
    )

    def add_arguments(self, parser):
        parser.add_argument("--account", type=int, help="Only this account id")
        parser.add_argument(
            "--since", help="From this day on (YYYY-MM-DD, in each account's time zone)"
        )

    def handle(self, *args, account=None, since=None, **options):
        accounts = Account.objects.order_by("pk")
        if account is not None:
            accounts = accounts.filter(pk=account)
            if not accounts.exists():
                raise CommandError(f"No account {account}.")
        day = None
        if since:
            try:
                day = datetime.strptime(since, "%Y-%m-%d")
            except ValueError as error:
                raise CommandError(f"--since must be YYYY-MM-DD, not {since!r}.") from error
        total_hourly = total_daily = 0
        for each in accounts.iterator():
            zone = zoneinfo.ZoneInfo(each.time_zone)
            start = timezone.make_aware(day, timezone=zone) if day else None
            hourly, daily = rollups_rebuild(account=each, since=start)
            total_hourly += hourly
            total_daily += daily
        self.stdout.write(
            f"Rebuilt {total_hourly} hourly and {total_daily} daily rows "
            f"for {accounts.count()} account(s)."
        )
