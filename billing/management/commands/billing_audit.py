import sys

from django.core.management.base import BaseCommand

from billing.reconciliation import audit_all


class Command(BaseCommand):
    help = "Recompute every account from its ledger; exit 1 with a report on any mismatch."

    def handle(self, *args, **options):
        accounts, problems = audit_all()
        for problem in problems:
            self.stderr.write(str(problem))
        if problems:
            self.stderr.write(f"billing_audit: {len(problems)} mismatch(es) in {accounts} accounts")
            sys.exit(1)
        self.stdout.write(f"billing_audit: {accounts} accounts match their ledgers")
