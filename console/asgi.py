import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

application = get_asgi_application()

# uvicorn set up its loggers before Django read settings.LOGGING: mask API keys there too.
from console.log_masking import mask_server_handlers  # noqa: E402

mask_server_handlers()
