"""Reads for API keys, including `api_key_from_header`: how every API (the gateway's and the
usage API) reads the caller's key."""

import functools
import hmac
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection
from django.db.models import Count, QuerySet
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from console.models import Account, RecoveryCode, Tier
from keys.models import ApiKey
from keys.services import secret_hash
from projects.models import Project

_KEY_SHAPE = re.compile(r"(?P<key_id>[0-9a-f]{32})\.(?P<secret>[A-Za-z0-9_-]{16,128})")


@dataclass(frozen=True)
class Authenticated:
    # None for the console's playground, which calls as a signed-in member, not with a key.
    key: ApiKey | None
    project: Project
    account: Account


@dataclass(frozen=True)
class KeyRejected:
    """Why a presented key does not authenticate the request (the APIs turn the reason into
    their refusal: console.api_errors.key_refusal)."""

    # missing, wrong_scope (api_key_from_header only); malformed, unknown, revoked, expired,
    # project_archived, account_suspended
    reason: str
    # Set when the key itself is genuine (archived project, suspended account): the request
    # passed authentication and gets a usage record.
    key: ApiKey | None = field(default=None, compare=False)


@sensitive_variables("raw_key", "match")
def api_key_authenticate(raw_key: str | None) -> Authenticated | KeyRejected:
    """Check a presented key. One indexed query (key, project, account and tier joined); no cache,
    so a revocation is seen by the very next request in every process."""
    match = _KEY_SHAPE.fullmatch(raw_key or "")
    if match is None:
        return KeyRejected("malformed")
    key = _key_with_project_and_account(match["key_id"])
    if key is None:
        return KeyRejected("unknown")
    # A key hashed with a pepper that was since retired cannot match.
    known = key.pepper_version in settings.API_KEY_PEPPERS
    expected = secret_hash(match["secret"], key.pepper_version) if known else ""
    if not hmac.compare_digest(expected, key.secret_hash):
        return KeyRejected("unknown")
    now = timezone.now()
    if key.revoked_at is not None and key.revoked_at <= now:
        return KeyRejected("revoked")
    if key.expires_at is not None and key.expires_at <= now:
        return KeyRejected("expired")
    if key.project.archived_at is not None:
        return KeyRejected("project_archived", key)
    if key.account.is_suspended:
        return KeyRejected("account_suspended", key)
    return Authenticated(key=key, project=key.project, account=key.account)


def api_key_from_header(
    authorization: str | None, *, scope: str | tuple[str, ...], bare: bool = False
) -> Authenticated | KeyRejected:
    """The key in an `Authorization: Bearer <key>` header, authenticated and of `scope` (a
    Scope value: the API's own; or several). With `bare`, the header may also be the key
    alone (the coding tools' quota clients send it so). A missing header or another scheme
    is `missing`; a genuine key of another scope is `wrong_scope`, without the key: such a
    request did not pass authentication, so it gets no usage record."""
    header = (authorization or "").strip()
    scheme, _space, raw = header.partition(" ")
    if scheme.lower() == "bearer":
        raw = raw.strip()
    elif bare and header and " " not in header:
        raw = header
    else:
        raw = ""
    if not raw:
        return KeyRejected("missing")
    result = api_key_authenticate(raw)
    scopes = (scope,) if isinstance(scope, str) else scope
    if isinstance(result, Authenticated) and result.key.scope not in scopes:
        return KeyRejected("wrong_scope")
    return result


# The gateway calls the lookup on every request. A profile showed the ORM compiling the
# three-table query (select_related) take longer than the database round trip, so the SQL is
# built once from the models' own metadata and rows become model instances with from_db.
# The account's tier comes along: admission reads its limits, and a lazy load of it was one
# more round trip per gateway request.
_MODELS = (ApiKey, Project, Account, Tier)


@functools.cache
def _lookup_sql() -> tuple[str, tuple[tuple[str, ...], ...]]:
    quote = connection.ops.quote_name
    aliases = ("k", "p", "a", "t")
    columns, attnames = [], []
    for alias, model in zip(aliases, _MODELS, strict=True):
        fields = model._meta.concrete_fields
        columns += [f"{alias}.{quote(field.column)}" for field in fields]
        attnames.append(tuple(field.attname for field in fields))
    sql = (
        f"SELECT {', '.join(columns)} FROM {quote(ApiKey._meta.db_table)} k "  # noqa: S608
        f"JOIN {quote(Project._meta.db_table)} p ON p.{quote('id')} = k.{quote('project_id')} "
        f"JOIN {quote(Account._meta.db_table)} a ON a.{quote('id')} = k.{quote('account_id')} "
        f"JOIN {quote(Tier._meta.db_table)} t ON t.{quote('id')} = a.{quote('tier_id')} "
        f"WHERE k.{quote('key_id')} = %s"
    )
    return sql, tuple(attnames)


def _aware(value):
    # SQLite hands back naive UTC datetimes where PostgreSQL gives aware ones.
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _key_with_project_and_account(key_id: str) -> ApiKey | None:
    sql, attnames = _lookup_sql()
    with connection.cursor() as cursor:
        cursor.execute(sql, [key_id])
        row = cursor.fetchone()
    if row is None:
        return None
    instances, start = [], 0
    for model, names in zip(_MODELS, attnames, strict=True):
        values = [_aware(value) for value in row[start : start + len(names)]]
        instances.append(model.from_db(connection.alias, names, values))
        start += len(names)
    key, project, account, tier = instances
    key.project, key.account, project.account, account.tier = project, account, account, tier
    return key


def key_list(*, account: Account, project: Project | None = None) -> QuerySet[ApiKey]:
    keys = ApiKey.objects.filter(account=account).select_related("project", "created_by")
    if project is not None:
        keys = keys.filter(project=project)
    return keys.order_by("-created_at", "-pk")


def pepper_usage() -> dict[int, int]:
    """Usable keys (not revoked, not expired) per pepper version: an old pepper can leave
    API_KEY_PEPPERS once no usable key was hashed with it (docs/security.md)."""
    rows = (
        ApiKey.objects.filter(ApiKey.usable_q(timezone.now()))
        .values("pepper_version")
        .annotate(count=Count("pk"))
        .order_by()
    )
    return {row["pepper_version"]: row["count"] for row in rows}


def pepper_usage_by_account(*, version: int) -> list[dict]:
    """The accounts whose usable keys still use `version`, most keys first."""
    return list(
        ApiKey.objects.filter(ApiKey.usable_q(timezone.now()), pepper_version=version)
        .values("account_id", "account__name")
        .annotate(count=Count("pk"))
        .order_by("-count", "account_id")
    )


def recovery_code_pepper_usage() -> dict[int, int]:
    """Users whose two-factor recovery codes were hashed with each pepper version: removing
    a version retires those codes too."""
    rows = (
        RecoveryCode.objects.values("pepper_version")
        .annotate(users=Count("device__user", distinct=True))
        .order_by()
    )
    return {row["pepper_version"]: row["users"] for row in rows}
