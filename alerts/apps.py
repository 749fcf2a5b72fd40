from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AlertsConfig(AppConfig):
    name = "alerts"
    verbose_name = _("Spend alerts")

    def ready(self):
        # Deferred to ready() (Django's app loading): the models must be ready.
        from alerts.services import schedule_evaluation
        from billing.signals import balance_alert_threshold

        def evaluate(sender, *, account_id: int, **kwargs) -> None:
            schedule_evaluation(account_id)

        balance_alert_threshold.connect(evaluate, weak=False, dispatch_uid="alerts.evaluate")
