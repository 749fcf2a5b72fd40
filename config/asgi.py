import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_asgi_application()

# HTTPS=true is production: refuse to serve with the sandbox card provider (billing/checks.py).
from billing.checks import refuse_unsafe_production  # noqa: E402

refuse_unsafe_production()

# uvicorn set up its loggers before Django read settings.LOGGING: mask API keys there too.
from console.log_masking import mask_server_handlers  # noqa: E402

mask_server_handlers()
