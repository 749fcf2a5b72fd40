"""Roles and the one permission map of the console.

Every check in views, templates and services asks `role_can(role, permission)`; nothing
else decides who may do what. Finance and viewer never see prompt content.
"""

from django.db import models
from django.utils.translation import gettext_lazy as _


class Role(models.TextChoices):
    OWNER = "owner", _("Owner")
    ADMIN = "admin", _("Admin")
    DEVELOPER = "developer", _("Developer")
    FINANCE = "finance", _("Finance")
    VIEWER = "viewer", _("Viewer")


OWNER, ADMIN, DEVELOPER, FINANCE, VIEWER = (
    Role.OWNER,
    Role.ADMIN,
    Role.DEVELOPER,
    Role.FINANCE,
    Role.VIEWER,
)

PERMISSIONS: dict[str, frozenset[Role]] = {
    # Overview and the members list: everyone in the account.
    "overview.view": frozenset({OWNER, ADMIN, DEVELOPER, FINANCE, VIEWER}),
    "members.view": frozenset({OWNER, ADMIN, DEVELOPER, FINANCE, VIEWER}),
    # Invite, change roles, remove (only owners touch the owner role: see members_* services).
    "members.manage": frozenset({OWNER, ADMIN}),
    # Name, time zone, currency of the account.
    "account.manage": frozenset({OWNER, ADMIN}),
    "audit.view": frozenset({OWNER, ADMIN}),
    # Projects and API keys.
    "projects.view": frozenset({OWNER, ADMIN, DEVELOPER, FINANCE, VIEWER}),
    "projects.manage": frozenset({OWNER, ADMIN, DEVELOPER}),
    # Caps, the account budget and archiving a project (its keys stop working).
    "caps.manage": frozenset({OWNER, ADMIN}),
    "keys.view": frozenset({OWNER, ADMIN, DEVELOPER, VIEWER}),
    "keys.manage": frozenset({OWNER, ADMIN, DEVELOPER}),
    # admin-read keys read usage and cost of the whole account.
    "keys.admin_read": frozenset({OWNER, ADMIN}),
    # Usage numbers carry no content; prompt history does.
    "usage.view": frozenset({OWNER, ADMIN, DEVELOPER, FINANCE, VIEWER}),
    "history.view": frozenset({OWNER, ADMIN, DEVELOPER}),
    "history.delete": frozenset({OWNER}),
    "playground.use": frozenset({OWNER, ADMIN, DEVELOPER}),
    # Money.
    "billing.view": frozenset({OWNER, ADMIN, FINANCE}),
    "billing.manage": frozenset({OWNER, ADMIN, FINANCE}),
    "alerts.manage": frozenset({OWNER, ADMIN, FINANCE}),
}


def role_can(role: str | None, permission: str) -> bool:
    """Whether `role` holds `permission`. An unknown permission is a programming error."""
    allowed = PERMISSIONS[permission]
    return role is not None and role in allowed


# Roles a member with `role` may hand out or take away.
def assignable_roles(role: str) -> list[Role]:
    if role == OWNER:
        return list(Role)
    if role == ADMIN:
        return [ADMIN, DEVELOPER, FINANCE, VIEWER]
    return []
