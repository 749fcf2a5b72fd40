from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class NotificationsConfig(AppConfig):
    """Delivers events (alerts) to an account: in-app, by email and by signed webhook."""

    name = "notifications"
    verbose_name = _("Notifications")
