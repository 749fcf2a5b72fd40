"""Writes for API keys. The raw key is built here, returned once in `CreatedKey`, and never
stored, logged or put in an audit record."""

import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, When
from django.utils import timezone
from django.utils.translation import gettext as _

from console.models import Account, AuditEvent, User
from console.secrets_at_rest import current_pepper_version, pepper_hash
from console.services import ServiceError, audit_record, changed_fields
from console.shared_state import API_KEY_LAST_USED_HASH, shared_state
from keys.models import ApiKey, Scope
from projects.models import Project

SECRET_BYTES = 24  # 192 bits of entropy from `secrets`, more than the 128 DESIGN.md asks
LAST_USED_THROTTLE_SECONDS = 60

# Rotation grace periods people can choose (seconds → label), 0 = revoke the old key at once.
GRACE_PERIODS = [0, 3600, 24 * 3600, 7 * 24 * 3600]


@dataclass(frozen=True)
class CreatedKey:
    key: ApiKey
    # `<key_id>.<secret>`: hand it to the person once, then forget it. Kept out of repr so
    # no traceback, log line or error report can print it.
    raw: str = field(repr=False)


def secret_hash(secret: str, pepper_version: int) -> str:
    return pepper_hash(secret, pepper_version=pepper_version)


def _check_expiry(expires_at: datetime | None) -> None:
    if expires_at is not None and expires_at <= timezone.now():
        raise ServiceError(_("The expiry must be in the future."))


def _new_key(
    *,
    account: Account,
    project: Project,
    label: str,
    scope: str,
    environment: str,
    expires_at: datetime | None,
    created_by: User | None,
) -> CreatedKey:
    key_id = secrets.token_hex(16)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    version = current_pepper_version()
    key = ApiKey.objects.create(
        account=account,
        project=project,
        key_id=key_id,
        secret_hash=secret_hash(secret, version),
        pepper_version=version,
        last4=secret[-4:],
        label=label,
        scope=scope,
        environment=environment,
        expires_at=expires_at,
        created_by=created_by,
    )
    return CreatedKey(key=key, raw=f"{key_id}.{secret}")


def _audit_metadata(key: ApiKey) -> dict:
    # Never the secret or the full key: the mask, the label and where it belongs.
    return {
        "label": key.label,
        "mask": key.mask,
        "scope": key.scope,
        "environment": key.environment,
        "project": key.project_id,
    }


def api_key_create(
    *,
    account: Account,
    project: Project,
    label: str,
    scope: str = Scope.INFERENCE,
    environment: str = "production",
    expires_at: datetime | None = None,
    actor: User | None,
    actor_kind: str = AuditEvent.ActorKind.USER,
    ip: str | None = None,
) -> CreatedKey:
    if project.account_id != account.pk:
        raise ServiceError(_("Choose a project of this account."))
    if project.is_archived:
        raise ServiceError(_("Keys cannot be added to an archived project."))
    if scope not in Scope.values:
        raise ServiceError(_("Unknown scope."))
    _check_expiry(expires_at)
    with transaction.atomic():
        created = _new_key(
            account=account,
            project=project,
            label=label,
            scope=scope,
            environment=environment,
            expires_at=expires_at,
            created_by=actor,
        )
        audit_record(
            action="api_key.create",
            account=account,
            actor=actor,
            actor_kind=actor_kind,
            target=created.key,
            ip=ip,
            metadata=_audit_metadata(created.key),
        )
    return created


def api_key_update(
    *, key: ApiKey, label: str, environment: str, actor: User, ip: str | None = None
) -> ApiKey:
    changes = changed_fields(key, label=label, environment=environment)
    if not changes:
        return key
    with transaction.atomic():
        ApiKey.objects.filter(pk=key.pk).update(label=label, environment=environment)
        key.label, key.environment = label, environment
        audit_record(
            action="api_key.update",
            account=key.account,
            actor=actor,
            target=key,
            ip=ip,
            metadata={"changes": changes, "mask": key.mask},
        )
    return key


def api_key_revoke(
    *,
    key: ApiKey,
    actor: User | None,
    actor_kind: str = AuditEvent.ActorKind.USER,
    reason: str = "",
    ip: str | None = None,
) -> ApiKey:
    """Revoke now. The gateway reads the key row on every request, so the very next request
    in any process is refused; there is no cache to outlive it."""
    now = timezone.now()
    with transaction.atomic():
        # A key already revoked, or scheduled earlier than now, keeps its time.
        updated = (
            ApiKey.objects.filter(pk=key.pk)
            .exclude(revoked_at__lte=now)
            .update(revoked_at=now, revoked_by=actor)
        )
        if updated:
            audit_record(
                action="api_key.revoke",
                account=key.account,
                actor=actor,
                actor_kind=actor_kind,
                target=key,
                reason=reason,
                ip=ip,
                metadata=_audit_metadata(key),
            )
    key.refresh_from_db()
    return key


def api_key_rotate(
    *, key: ApiKey, actor: User, grace_seconds: int = 0, ip: str | None = None
) -> CreatedKey:
    """A replacement with the same label, project, scope, environment and expiry; the old key
    is revoked at once or when the grace period ends."""
    if grace_seconds not in GRACE_PERIODS:
        raise ServiceError(_("Choose one of the offered grace periods."))
    with transaction.atomic():
        old = ApiKey.objects.select_for_update().select_related("project").get(pk=key.pk)
        if not old.is_usable or old.replaced_by_id is not None:
            raise ServiceError(_("Only an active key that was not rotated yet can be rotated."))
        if old.project.is_archived:
            raise ServiceError(_("Keys cannot be added to an archived project."))
        expires_at = old.expires_at if old.expires_at and old.expires_at > timezone.now() else None
        created = _new_key(
            account=old.account,
            project=old.project,
            label=old.label,
            scope=old.scope,
            environment=old.environment,
            expires_at=expires_at,
            created_by=actor,
        )
        old.replaced_by = created.key
        old.revoked_at = timezone.now() + timedelta(seconds=grace_seconds)
        old.revoked_by = actor
        old.save(update_fields=["replaced_by", "revoked_at", "revoked_by"])
        audit_record(
            action="api_key.rotate",
            account=old.account,
            actor=actor,
            target=old,
            ip=ip,
            metadata={
                **_audit_metadata(old),
                "replacement": created.key.pk,
                "replacement_mask": created.key.mask,
                "grace_seconds": grace_seconds,
            },
        )
    return created


# --- Last used ------------------------------------------------------------------------------

_local_last_written: dict[int, float] = {}


def api_key_mark_used(*, key: ApiKey, at: datetime | None = None) -> None:
    """Note that `key` served a request. With Redis, buffered and flushed by a task (the list
    may lag a minute); in the embedded default's single process, written at most once a
    minute per key."""
    at = at or timezone.now()
    if settings.SHARED_STATE_BACKEND == "redis":
        shared_state().hash_set(API_KEY_LAST_USED_HASH, str(key.pk), at.isoformat())
        return
    now = time.monotonic()
    if now - _local_last_written.get(key.pk, -LAST_USED_THROTTLE_SECONDS) >= (
        LAST_USED_THROTTLE_SECONDS
    ):
        _local_last_written[key.pk] = now
        _write_last_used({key.pk: at})


def _write_last_used(times: dict[int, datetime]) -> int:
    if not times:
        return 0
    # Never move a time backwards (a slow flush after a newer direct write).
    return ApiKey.objects.filter(pk__in=times).update(
        last_used_at=Case(
            *[
                When(
                    pk=pk,
                    then=Case(When(last_used_at__gte=at, then=F("last_used_at")), default=at),
                )
                for pk, at in times.items()
            ],
            default=F("last_used_at"),
        )
    )


def api_keys_flush_last_used() -> int:
    """Move buffered last-used times into the database (the periodic task calls this)."""
    state = shared_state()
    drained = state.hash_drain(API_KEY_LAST_USED_HASH)
    times = {int(pk): datetime.fromisoformat(stamp) for pk, stamp in drained.items()}
    try:
        return _write_last_used(times)
    except Exception:
        # Put the batch back for the retry (a newer time written meanwhile may be replaced
        # by this older one; the next request with that key sets it again).
        for pk, stamp in drained.items():
            state.hash_set(API_KEY_LAST_USED_HASH, pk, stamp)
        raise
