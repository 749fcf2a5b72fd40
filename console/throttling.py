"""Per-IP limits on the public forms that are not sign-ins (django-axes throttles those).

Sign-up tells whether an address is registered, and password reset sends an email to any
address typed: unthrottled, one is an oracle for harvesting addresses and the other a way to
flood someone's inbox. Each POST counts in a fixed one-hour window per IP address, kept in the
shared state (Redis in production); when that store cannot be reached the form still works.
"""

import functools
import logging

from django.conf import settings
from django.shortcuts import render

from console.shared_state import shared_state

logger = logging.getLogger(__name__)
WINDOW_SECONDS = 3600


def ip_over_limit(request, *, scope: str, limit: int) -> bool:
    ip = request.META.get("REMOTE_ADDR") or "unknown"
    try:
        window = shared_state().hit_window(
            f"throttle:{scope}:{ip}", limit=limit, window_seconds=WINDOW_SECONDS
        )
    except Exception:
        logger.warning("throttle %s: shared state unavailable, request allowed", scope)
        return False
    return not window.allowed


def throttle_posts(scope: str, limit_setting: str):
    """Answer 429 with a page once an IP address sent `settings.<limit_setting>` POSTs to the
    view within the hour."""

    def decorator(view):
        @functools.wraps(view)
        def wrapped(request, *args, **kwargs):
            limit = getattr(settings, limit_setting)
            if request.method == "POST" and ip_over_limit(request, scope=scope, limit=limit):
                return render(request, "registration/throttled.html", status=429)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
