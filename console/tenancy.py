"""The one place that decides which account a request acts for.

Every view of tenant data goes through `account_view` (login, membership, permission) and
fetches objects with `account_object_or_404`, so another account's object is a 404, never a
403 that would confirm it exists.
"""

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone

from console.models import Account, Membership
from console.roles import role_can

SESSION_KEY = "current_account_id"


def current_membership(request) -> Membership | None:
    """The signed-in user's membership in the account chosen in the switcher.

    Falls back to the user's oldest membership when nothing (or an account the user no
    longer belongs to) is in the session. Cached on the request.
    """
    if hasattr(request, "_console_membership"):
        return request._console_membership
    membership = None
    if request.user.is_authenticated:
        memberships = Membership.objects.filter(user=request.user).select_related(
            "account", "account__tier"
        )
        chosen = request.session.get(SESSION_KEY)
        if chosen is not None:
            membership = memberships.filter(account_id=chosen).first()
        if membership is None:
            membership = memberships.order_by("created_at", "pk").first()
    request._console_membership = membership
    return membership


def current_account(request) -> Account | None:
    membership = current_membership(request)
    return membership.account if membership else None


def switch_account(request, account_id: int) -> Membership:
    """Make `account_id` current for this session; 404 unless the user is a member."""
    membership = get_object_or_404(
        Membership.objects.select_related("account"), user=request.user, account_id=account_id
    )
    request.session[SESSION_KEY] = membership.account_id
    request._console_membership = membership
    return membership


def account_object_or_404(model_or_queryset: type[Model] | QuerySet, account: Account, **lookup):
    """Fetch one object of `account`, or 404 — whether it is missing or someone else's."""
    queryset = (
        model_or_queryset
        if isinstance(model_or_queryset, QuerySet)
        else model_or_queryset._default_manager.all()
    )
    return object_or_404(queryset.filter(account=account), **lookup)


def object_or_404(queryset: QuerySet, **lookup):
    """get_object_or_404 that also answers 404 for ids no 64-bit column can hold (SQLite
    cannot even bind them, and would raise instead)."""
    if any(isinstance(value, int) and not 0 < value < 2**63 for value in lookup.values()):
        raise Http404
    return get_object_or_404(queryset, **lookup)


def account_view(permission: str) -> Callable:
    """Decorate a console view: signed in, a member of some account, holding `permission`.

    Sets `request.membership` and `request.account`. A user without any account is sent to
    create one; a member without the permission gets 403 (it is their own account).
    """

    def decorator(view):
        @login_required
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            membership = current_membership(request)
            if membership is None:
                return redirect("account_create")
            if not role_can(membership.role, permission):
                raise PermissionDenied
            request.membership = membership
            request.account = membership.account
            # Dates on console pages read in the account's time zone (caps and statements
            # follow it too).
            timezone.activate(membership.account.time_zone)
            try:
                return view(request, *args, **kwargs)
            finally:
                timezone.deactivate()

        return wrapper

    return decorator
