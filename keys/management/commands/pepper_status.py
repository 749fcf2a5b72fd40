from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from console.secrets_at_rest import current_pepper_version
from keys.selectors import pepper_usage, pepper_usage_by_account, recovery_code_pepper_usage


class Command(BaseCommand):
    help = (
        "How many usable API keys were hashed with each pepper version, so an old version "
        "leaves API_KEY_PEPPERS only once nothing needs it (docs/security.md). Exits non-zero "
        "when usable keys use a version that is not configured: those keys are refused."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--accounts",
            action="store_true",
            help="Also list the accounts whose usable keys use an old version.",
        )

    def handle(self, *args, accounts, **options):
        usage = pepper_usage()
        recovery_codes = recovery_code_pepper_usage()
        current = current_pepper_version()
        configured = settings.API_KEY_PEPPERS
        for version in sorted(set(configured) | set(usage), reverse=True):
            count = usage.get(version, 0)
            keys = f"{count} usable key{'' if count == 1 else 's'}"
            if version == current:
                note = "current: new and rotated keys use it"
            elif version not in configured:
                note = "NOT CONFIGURED: these keys are refused"
            elif count:
                note = "still needed until these keys are rotated, revoked or expired"
            else:
                note = "no usable key needs it: it can leave API_KEY_PEPPERS"
            self.stdout.write(f"pepper {version}: {keys} ({note})")
            if people := recovery_codes.get(version, 0):
                # Recovery codes are hashed with the same pepper (console/secrets_at_rest.py).
                self.stdout.write(
                    f"  and the recovery codes of {people} user{'' if people == 1 else 's'} "
                    "(they stop working when this version leaves: those users replace them "
                    "on their security page)"
                )
            if accounts and version != current:
                for row in pepper_usage_by_account(version=version):
                    self.stdout.write(
                        f"  account {row['account_id']} {row['account__name']!r}: "
                        f"{row['count']} key{'' if row['count'] == 1 else 's'}"
                    )
        missing = sorted(version for version in usage if version not in configured)
        if missing:
            raise CommandError(
                f"usable keys use pepper version(s) {missing} missing from API_KEY_PEPPERS"
            )
