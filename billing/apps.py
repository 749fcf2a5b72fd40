from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BillingConfig(AppConfig):
    """Money: prices, wallet, ledger, packs, payments, invoices and statements."""

    name = "billing"
    verbose_name = _("Billing")

    def ready(self):
        # Deferred to ready(): registering the checks needs the settings loaded.
        from billing import checks  # noqa: F401  (registers the system checks
