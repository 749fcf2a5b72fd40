from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class KeysConfig(AppConfig):
    """API keys: created, shown once, masked afterwards (the API keys issue builds it)."""

    name = "keys"
    verbose_name = _("API keys")
