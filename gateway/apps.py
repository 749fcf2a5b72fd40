from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class GatewayConfig(AppConfig):
    """The OpenAI-compatible API and its simulator upstream."""

    name = "gateway"
    verbose_name = _("Gateway")
