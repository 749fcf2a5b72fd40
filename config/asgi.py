import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

django_application = get_asgi_application()

# The coding plan's MCP server (gateway/mcp.py, the `mcp` SDK) is an ASGI app of its own: its
# prefix goes there, everything else to Django. The lifespan goes to it as well (Django's
# handler takes none): it starts the SDK's session manager.
from gateway.mcp import MCP_PREFIX, mcp_app  # noqa: E402


async def application(scope, receive, send):
    if scope["type"] == "lifespan" or (
        scope["type"] == "http" and scope["path"].startswith(MCP_PREFIX)
    ):
        return await mcp_app(scope, receive, send)
    return await django_application(scope, receive, send)


# HTTPS=true is production: refuse to serve with the sandbox card provider (billing/checks.py).
from billing.checks import refuse_unsafe_production  # noqa: E402

refuse_unsafe_production()

# uvicorn set up its loggers before Django read settings.LOGGING: mask API keys there too.
from console.log_masking import mask_server_handlers  # noqa: E402

mask_server_handlers()
