"""Per-IP limits on the public forms that are not sign-ins (django-axes throttles those),
and the per-address ceiling that slows sign-ins guessed from many IP addresses.

Sign-up tells whether an address is registered, and password reset sends an email to any
address typed: unthrottled, one is an oracle for harvesting addresses and the other a way to
flood someone's inbox. Each POST counts in a fixed one-hour window per IP address, kept in the
shared state (Redis in production); when that store cannot be reached the form still works.
"""

import functools
import logging
import math

from django.conf import settings
from django.shortcuts import render

from console.shared_state import shared_state, signin_address_key, throttle_key

logger = logging.getLogger(__name__)
WINDOW_SECONDS = 3600


def ip_over_limit(request, *, scope: str, limit: int) -> bool:
    ip = request.META.get("REMOTE_ADDR") or "unknown"
    try:
        window = shared_state().hit_window(
            throttle_key(scope, ip), limit=limit, window_seconds=WINDOW_SECONDS
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


# --- Sign-in: a ceiling per address, across IP addresses ------------------------------------
# django-axes locks an address only together with one IP address (settings.py), so nobody can
# lock the owner out from their own network; but a guesser with many IP addresses would get
# five guesses from each. Past LOGIN_ADDRESS_FAILURE_CEILING failed password checks within
# the window, the address's sign-ins wait for the window to end. Refused attempts are neither
# checked nor counted, so they cannot stretch the wait: the owner waits minutes at most.


def signin_address_wait(address: str) -> float:
    """Seconds before a sign-in as `address` may be tried again (0: now)."""
    ceiling = settings.LOGIN_ADDRESS_FAILURE_CEILING
    try:
        state = shared_state()
        key = signin_address_key(address)
        if state.get_int(key) < ceiling:
            return 0
        # At the ceiling a hit counts nothing and tells how long the window has left. (Should
        # the window end in between, it counts one failure that was not: harmless.)
        window = state.hit_window(
            key, limit=ceiling, window_seconds=settings.LOGIN_ADDRESS_WINDOW_SECONDS
        )
    except Exception:
        logger.warning("sign-in ceiling: shared state unavailable, sign-in allowed")
        return 0
    return 0 if window.allowed else window.reset_seconds


def signin_failure_count(address: str) -> None:
    """Count one failed password check for `address`, from whichever IP address."""
    try:
        shared_state().hit_window(
            signin_address_key(address),
            limit=settings.LOGIN_ADDRESS_FAILURE_CEILING,
            window_seconds=settings.LOGIN_ADDRESS_WINDOW_SECONDS,
        )
    except Exception:
        logger.warning("sign-in ceiling: shared state unavailable, failure not counted")


def signin_slowed_response(request, wait_seconds: float):
    """429 with the time left, in the console's layout."""
    response = render(
        request,
        "registration/signin_slowed.html",
        {"minutes": max(1, math.ceil(wait_seconds / 60))},
        status=429,
    )
    response["Retry-After"] = str(max(1, math.ceil(wait_seconds)))
    return response
