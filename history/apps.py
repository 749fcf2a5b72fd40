from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class HistoryConfig(AppConfig):
    """Prompt history: the log of forwarded requests, its search and retention."""

    name = "history"
    verbose_name = _("Prompt history")
