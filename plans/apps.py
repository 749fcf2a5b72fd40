from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PlansConfig(AppConfig):
    name = "plans"
    verbose_name = _("GLM Coding Plan")

    def ready(self):
        # Deferred to ready() (Django's app loading): plans.services needs the models ready.
        from billing.signals import purchase_paid
        from plans.services import plan_paid

        # A card payment for a plan delivers it when it succeeds (billing.payments._deliver).
        purchase_paid.connect(plan_paid, dispatch_uid="plans.plan_paid")
