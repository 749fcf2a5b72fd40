"""Reads for accounts and members. Every function takes the account it is scoped to (the
overview, which reads several apps, is portal/selectors.py)."""

from django.db.models import QuerySet
from django.utils import timezone

from console.models import Account, AuditEvent, Invitation, Membership
from console.roles import role_can


def member_list(*, account: Account) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(account=account)
        .select_related("user")
        .order_by("created_at", "pk")
    )


def open_invitations(*, account: Account) -> QuerySet[Invitation]:
    return Invitation.objects.filter(
        account=account,
        accepted_at__isnull=True,
        revoked_at__isnull=True,
        expires_at__gt=timezone.now(),
    ).order_by("-created_at")


def audit_log(*, account: Account, action_prefix: str = "") -> QuerySet:
    """The account's own audit events, newest first (an action prefix such as `api_key.`
    narrows them). Served by the audit event's (account, created_at) index."""
    events = AuditEvent.objects.filter(account=account).select_related("actor")
    if action_prefix:
        events = events.filter(action__startswith=action_prefix)
    return events.order_by("-created_at", "-pk")


def user_memberships(*, user) -> QuerySet[Membership]:
    """The accounts a user can switch to (the switcher)."""
    return Membership.objects.filter(user=user).select_related("account").order_by("account__name")


def membership_can(membership: Membership | None, permission: str) -> bool:
    return membership is not None and role_can(membership.role, permission)
