"""System checks for payments: the sandbox card provider credits any test card, so a
production deployment refuses it unless ALLOW_SANDBOX_CARDS says so.

"Production" is `check --deploy`, or HTTPS=true (the production switch) at start-up. DEBUG is
not the signal: it defaults to false, and `make run`, Procfile.dev and CI run without it on
the sandbox. uvicorn runs no system checks and a Celery worker ignores their errors, so
config/asgi.py and config/wsgi.py call `refuse_unsafe_production()` before they serve, and
config/celery.py when a worker starts.
"""

from django.conf import settings
from django.core import checks
from django.core.management.base import SystemCheckError

from billing.providers import PROVIDER_NAMES

PRODUCTION = "production"


def _unknown_provider() -> list[checks.CheckMessage]:
    if settings.CARD_PROVIDER in PROVIDER_NAMES:
        return []
    return [
        checks.Error(
            f"CARD_PROVIDER={settings.CARD_PROVIDER!r} names no card provider.",
            hint=f"Use one of: {', '.join(PROVIDER_NAMES)}.",
            id="billing.E002",
        )
    ]


def _sandbox_refused() -> list[checks.CheckMessage]:
    if settings.CARD_PROVIDER != "sandbox" or settings.ALLOW_SANDBOX_CARDS:
        return []
    return [
        checks.Error(
            "The sandbox card provider credits any test card (4242 4242 4242 4242): "
            "anyone could recharge an unlimited balance.",
            hint="Set CARD_PROVIDER=none (or a real provider), or ALLOW_SANDBOX_CARDS=true "
            "on a staging site that takes no real money.",
            id="billing.E001",
        )
    ]


@checks.register(checks.Tags.security, deploy=True)
def card_provider_for_deploy(app_configs=None, **kwargs):
    # Under HTTPS=true the check below already says it.
    return [] if settings.HTTPS else _sandbox_refused()


@checks.register(PRODUCTION)
def card_provider(app_configs=None, **kwargs):
    return _unknown_provider() or (_sandbox_refused() if settings.HTTPS else [])


def refuse_unsafe_production() -> None:
    """At a server's start-up: stop with the errors of the production checks, if any."""
    errors = [
        message for message in checks.run_checks(tags=[PRODUCTION]) if message.level >= checks.ERROR
    ]
    if errors:
        raise SystemCheckError("The console will not start:\n" + "\n".join(map(str, errors)))
