"""Reads for accounts and members. Every function takes the account it is scoped to."""

from dataclasses import dataclass

from django.db.models import QuerySet
from django.utils import timezone

from console.models import Account, Invitation, Membership, Tier
from console.roles import role_can
from projects.selectors import project_list


@dataclass(frozen=True)
class AccountOverview:
    account: Account
    tier: Tier
    member_count: int
    project_count: int
    open_invitation_count: int


def account_overview(*, account: Account) -> AccountOverview:
    return AccountOverview(
        account=account,
        tier=account.tier,
        member_count=Membership.objects.filter(account=account).count(),
        project_count=project_list(account=account).count(),
        open_invitation_count=open_invitations(account=account).count(),
    )


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


def user_memberships(*, user) -> QuerySet[Membership]:
    """The accounts a user can switch to (the switcher)."""
    return Membership.objects.filter(user=user).select_related("account").order_by("account__name")


def membership_can(membership: Membership | None, permission: str) -> bool:
    return membership is not None and role_can(membership.role, permission)
