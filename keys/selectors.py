"""Reads for API keys, including `api_key_authenticate`: the one function the gateway calls."""

import hmac
import re
from dataclasses import dataclass

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from console.models import Account
from keys.models import ApiKey
from keys.services import secret_hash
from projects.models import Project

_KEY_SHAPE = re.compile(r"(?P<key_id>[0-9a-f]{32})\.(?P<secret>[A-Za-z0-9_-]{16,128})")


@dataclass(frozen=True)
class Authenticated:
    key: ApiKey
    project: Project
    account: Account


@dataclass(frozen=True)
class Refused:
    # malformed, unknown, revoked, expired, project_archived, account_suspended
    reason: str


def api_key_authenticate(raw_key: str | None) -> Authenticated | Refused:
    """Check a presented key. One indexed query (key, project and account joined); no cache,
    so a revocation is seen by the very next request in every process."""
    match = _KEY_SHAPE.fullmatch(raw_key or "")
    if match is None:
        return Refused("malformed")
    key = ApiKey.objects.select_related("project", "account").filter(key_id=match["key_id"]).first()
    if key is None:
        return Refused("unknown")
    # A key hashed with a pepper that was since retired cannot match.
    known = key.pepper_version in settings.API_KEY_PEPPERS
    expected = secret_hash(match["secret"], key.pepper_version) if known else ""
    if not hmac.compare_digest(expected, key.secret_hash):
        return Refused("unknown")
    now = timezone.now()
    if key.revoked_at is not None and key.revoked_at <= now:
        return Refused("revoked")
    if key.expires_at is not None and key.expires_at <= now:
        return Refused("expired")
    if key.project.archived_at is not None:
        return Refused("project_archived")
    if key.account.is_suspended:
        return Refused("account_suspended")
    return Authenticated(key=key, project=key.project, account=key.account)


def key_list(*, account: Account, project: Project | None = None) -> QuerySet[ApiKey]:
    keys = ApiKey.objects.filter(account=account).select_related("project", "created_by")
    if project is not None:
        keys = keys.filter(project=project)
    return keys.order_by("-created_at", "-pk")
