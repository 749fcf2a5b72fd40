"""Writes for accounts, members, invitations, tiers and the audit trail.

Views, management commands, tasks and the admin all call these; none of them write these
models directly. What also opens a wallet or a project, grants the starter pack or rebuilds
month counters (opening an account, signing up, verifying an address, a time-zone change)
is portal/services.py, built on the core functions here.
"""

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core import signing
from django.db import models, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from console.emails import email_queue
from console.models import Account, AuditEvent, Invitation, JobRun, Membership, Tier, User
from console.roles import OWNER, Role, assignable_roles

EMAIL_VERIFICATION_SALT = "console.email-verification"


class ServiceError(Exception):
    """A rule refused the change; the message is shown to the person as it is."""


# --- Audit ----------------------------------------------------------------------------------


def audit_record(
    *,
    action: str,
    account: Account | None = None,
    actor: User | None = None,
    actor_kind: str = AuditEvent.ActorKind.USER,
    target: models.Model | None = None,
    reason: str = "",
    ip: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> AuditEvent:
    """Write one audit event. Call it inside the transaction of the change it records."""
    return AuditEvent.objects.create(
        account=account,
        actor=actor,
        actor_kind=actor_kind,
        action=action,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        reason=reason,
        ip=ip,
        metadata=metadata or {},
    )


def changed_fields(instance: models.Model, **values) -> dict[str, list]:
    """{field: [old, new]} for the values that differ: what an update's audit event records."""
    return {
        field: [getattr(instance, field), value]
        for field, value in values.items()
        if getattr(instance, field) != value
    }


def lock_in_order(queryset: models.QuerySet) -> list[models.Model]:
    """Lock rows in primary-key order, so two code paths can never deadlock each other."""
    return list(queryset.select_for_update().order_by("pk"))


# --- Accounts and users ---------------------------------------------------------------------


def default_tier() -> Tier:
    return Tier.objects.order_by("rank").first()


def account_with_owner_create(
    *,
    owner: User,
    name: str,
    currency: str = settings.DEFAULT_CURRENCY,
    time_zone: str = settings.DEFAULT_ACCOUNT_TIME_ZONE,
    tier: Tier | None = None,
    actor_kind: str = AuditEvent.ActorKind.USER,
) -> Account:
    """The account row with `owner` as its owner, audited: the core of opening an account
    (portal/services.py `account_create` adds the Default project and the wallet in the same
    transaction). Refused when the owner already owns as many accounts as they may. Call it
    inside a transaction: it locks the owner's row."""
    # The owner's row serialises their creations: two forms sent at once cannot both count
    # four owned accounts and make a sixth.
    limit = User.objects.select_for_update().values_list("accounts_max", flat=True).get(pk=owner.pk)
    limit = settings.ACCOUNTS_PER_OWNER_MAX if limit is None else limit
    if Membership.objects.filter(user=owner, role=OWNER).count() >= limit:
        raise ServiceError(
            ngettext(
                "You can own at most %(limit)s account. Ask support to raise the limit.",
                "You can own at most %(limit)s accounts. Ask support to raise the limit.",
                limit,
            )
            % {"limit": limit}
        )
    account = Account.objects.create(
        name=name, currency=currency, time_zone=time_zone, tier=tier or default_tier()
    )
    Membership.objects.create(account=account, user=owner, role=OWNER)
    audit_record(
        action="account.create",
        account=account,
        actor=owner,
        actor_kind=actor_kind,
        target=account,
        metadata={"currency": currency, "tier": account.tier.slug},
    )
    return account


def user_create(
    *, email: str, password: str, name: str, language: str = "", email_verified: bool = False
) -> User:
    """A new user (the core of a sign-up: portal/services.py `user_signup`). Refused when the
    address is taken, in any case."""
    if User.objects.filter(email__iexact=email).exists():
        raise ServiceError(_("An account with this email address already exists."))
    return User.objects.create_user(
        email=email,
        password=password,
        name=name,
        language=language,
        email_verified=email_verified,
    )


def user_set_starter_pack_account(*, user: User, account: Account) -> None:
    """The account that gets the person's one starter pack when their address is verified."""
    User.objects.filter(pk=user.pk).update(starter_pack_account=account)
    user.starter_pack_account = account


def email_verification_token(user: User) -> str:
    # The address is signed in, so a link stops working once the address changes.
    return signing.dumps({"user": user.pk, "email": user.email}, salt=EMAIL_VERIFICATION_SALT)


def email_verification_send(*, user: User) -> None:
    link = settings.SITE_URL + reverse("verify_email", args=[email_verification_token(user)])
    with translation.override(user.language or translation.get_language()):
        email_queue(
            kind="verify_email",
            to=user.email,
            subject=_("Verify your email address"),
            body=render_to_string("console/email/verify_email.txt", {"user": user, "link": link}),
        )


def email_verification_check(*, token: str) -> User:
    """The user a verification link names, refused when the link is expired, forged or
    names an address the user no longer has."""
    try:
        data = signing.loads(
            token, salt=EMAIL_VERIFICATION_SALT, max_age=settings.EMAIL_VERIFICATION_MAX_AGE
        )
    except signing.SignatureExpired as error:
        raise ServiceError(_("This verification link has expired. Send a new one.")) from error
    except signing.BadSignature as error:
        raise ServiceError(_("This verification link is not valid.")) from error
    user = User.objects.filter(pk=data.get("user"), email=data.get("email")).first()
    if user is None:
        raise ServiceError(_("This verification link is not valid."))
    return user


def user_mark_email_verified(*, user: User) -> bool:
    """Mark the address verified; True only for the call that verified it. The row count
    says who verified: of two requests at once, the second waits for the first's commit and
    then updates nothing (portal/services.py `email_verify` grants the starter pack once on
    that answer)."""
    return bool(User.objects.filter(pk=user.pk, email_verified=False).update(email_verified=True))


def user_set_language(*, user: User, language: str) -> None:
    if language not in dict(settings.LANGUAGES):
        raise ServiceError(_("Unknown language."))
    User.objects.filter(pk=user.pk).update(language=language)
    user.language = language


def account_lock(*, account: Account) -> Account:
    """The account's row, locked for the rest of the transaction."""
    return Account.objects.select_for_update().get(pk=account.pk)


def account_settings_changes(
    *,
    account: Account,
    name: str,
    time_zone: str,
    currency: str,
    store_prompt_content: bool | None = None,
) -> dict[str, list]:
    """{field: [old, new]} of a settings change, refused when the currency would change
    after money has moved. `account` is the locked row (`account_lock`)."""
    if currency != account.currency and account.currency_locked:
        raise ServiceError(_("The currency cannot change once money has moved in this account."))
    values = {"name": name, "time_zone": time_zone, "currency": currency}
    if store_prompt_content is not None:
        values["store_prompt_content"] = store_prompt_content
    return changed_fields(account, **values)


def account_settings_save(
    *,
    account: Account,
    changes: dict[str, list],
    actor: User,
    ip: str | None = None,
    actor_kind: str = AuditEvent.ActorKind.USER,
) -> Account:
    """Store the changes of `account_settings_changes` on the locked row, audited. A
    time-zone change also rebuilds month counters and roll-ups: portal/services.py
    `account_update` is the whole change."""
    for field, (_old, value) in changes.items():
        setattr(account, field, value)
    account.save(update_fields=list(changes))
    audit_record(
        action="account.update",
        account=account,
        actor=actor,
        actor_kind=actor_kind,
        target=account,
        ip=ip,
        metadata={"changes": changes},
    )
    return account


def account_set_tier(
    *,
    account: Account,
    tier: Tier,
    pinned: bool | None = None,
    actor: User | None = None,
    actor_kind: str = AuditEvent.ActorKind.STAFF,
    reason: str = "",
) -> Account:
    """Change an account's tier (staff, or promotion with actor_kind=system)."""
    with transaction.atomic():
        locked = Account.objects.select_for_update().get(pk=account.pk)
        before = (locked.tier_id, locked.tier_pinned)
        locked.tier = tier
        if pinned is not None:
            locked.tier_pinned = pinned
        if (locked.tier_id, locked.tier_pinned) == before:
            return locked
        locked.save(update_fields=["tier", "tier_pinned"])
        audit_record(
            action="account.tier_change",
            account=locked,
            actor=actor,
            actor_kind=actor_kind,
            target=locked,
            reason=reason,
            metadata={"from": before[0], "to": tier.pk, "pinned": locked.tier_pinned},
        )
    return locked


def account_set_status(
    *,
    account: Account,
    status: str,
    actor: User | None = None,
    actor_kind: str = AuditEvent.ActorKind.STAFF,
    reason: str = "",
) -> Account:
    """Suspend or restore an account (staff). The gateway reads the status on every request,
    so a suspended account's next request is refused (1120)."""
    if status not in Account.Status.values:
        raise ServiceError(_("Unknown account status."))
    with transaction.atomic():
        locked = Account.objects.select_for_update().get(pk=account.pk)
        if locked.status == status:
            return locked
        before = locked.status
        locked.status = status
        locked.save(update_fields=["status"])
        audit_record(
            action="account.suspend" if status == Account.Status.SUSPENDED else "account.restore",
            account=locked,
            actor=actor,
            actor_kind=actor_kind,
            target=locked,
            reason=reason,
            metadata={"from": before, "to": status},
        )
    return locked


def account_promote_tier(*, account: Account, paid_nano: int) -> Tier | None:
    """Promote to the best tier whose threshold the cumulative paid recharge reaches (never
    down, never a pinned tier). Called by every paid recharge, in its transaction. Returns
    the new tier, or None when nothing changed."""
    locked = Account.objects.select_related("tier").get(pk=account.pk)
    if locked.tier_pinned:
        return None
    threshold = (
        "promotion_threshold_cny_nano"
        if locked.currency == "CNY"
        else "promotion_threshold_usd_nano"
    )
    best = (
        Tier.objects.filter(rank__gt=locked.tier.rank, **{f"{threshold}__lte": paid_nano})
        .order_by("-rank")
        .first()
    )
    if best is None:
        return None
    account_set_tier(
        account=locked,
        tier=best,
        actor_kind=AuditEvent.ActorKind.SYSTEM,
        reason=_("Promotion: %(tier)s reached by cumulative paid recharge.")
        % {"tier": best.display_name},
    )
    account.tier = best
    return best


# --- Members and invitations ----------------------------------------------------------------


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invitation_create(
    *, account: Account, inviter: Membership, email: str, role: str, ip: str | None = None
) -> Invitation:
    """Invite `email` with `role`; re-inviting an open invitation sends a fresh link."""
    email = email.strip().lower()
    if role not in assignable_roles(inviter.role):
        raise ServiceError(_("You cannot invite someone with this role."))
    if Membership.objects.filter(account=account, user__email__iexact=email).exists():
        raise ServiceError(_("This person is already a member of the account."))
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        # Serialise invitations per account: two clicks on "send" must not both insert.
        Account.objects.select_for_update().filter(pk=account.pk).first()
        Invitation.objects.filter(
            account=account,
            email__iexact=email,
            accepted_at__isnull=True,
            revoked_at__isnull=True,
        ).update(revoked_at=timezone.now())
        invitation = Invitation.objects.create(
            account=account,
            email=email,
            role=role,
            token_hash=_token_hash(token),
            invited_by=inviter.user,
            expires_at=timezone.now() + timedelta(days=settings.INVITATION_VALID_DAYS),
        )
        audit_record(
            action="member.invite",
            account=account,
            actor=inviter.user,
            target=invitation,
            ip=ip,
            metadata={"email": email, "role": role},
        )
        _invitation_send(invitation=invitation, token=token)
    return invitation


def _invitation_send(*, invitation: Invitation, token: str) -> None:
    """Queued in the invitation's transaction, sent after commit (console/emails.py)."""
    link = settings.SITE_URL + reverse("invitation_accept", args=[token])
    email_queue(
        kind="invitation",
        to=invitation.email,
        subject=_("You are invited to %(account)s on BigModel Console")
        % {"account": invitation.account.name},
        body=render_to_string(
            "console/email/invitation.txt", {"invitation": invitation, "link": link}
        ),
    )


def invitation_for_token(token: str) -> Invitation | None:
    return (
        Invitation.objects.select_related("account", "invited_by")
        .filter(token_hash=_token_hash(token))
        .first()
    )


def invitation_accept(*, token: str, user: User) -> Membership:
    with transaction.atomic():
        invitation = (
            Invitation.objects.select_for_update()
            .select_related("account")
            .filter(token_hash=_token_hash(token))
            .first()
        )
        if invitation is None or not invitation.is_open:
            raise ServiceError(_("This invitation is no longer valid. Ask for a new one."))
        # The link may have been forwarded: only the invited address may use it.
        if invitation.email.lower() != user.email.lower():
            raise ServiceError(
                _("This invitation was sent to %(email)s. Sign in with that address to accept.")
                % {"email": invitation.email}
            )
        membership, created = Membership.objects.get_or_create(
            account=invitation.account, user=user, defaults={"role": invitation.role}
        )
        invitation.accepted_at = timezone.now()
        invitation.accepted_by = user
        invitation.save(update_fields=["accepted_at", "accepted_by"])
        if not user.email_verified:
            # Receiving the link at that address proves it.
            User.objects.filter(pk=user.pk).update(email_verified=True)
        audit_record(
            action="member.join",
            account=invitation.account,
            actor=user,
            target=membership,
            metadata={"role": membership.role, "invitation": invitation.pk, "new": created},
        )
    return membership


def invitation_revoke(*, invitation: Invitation, actor: Membership, ip: str | None = None) -> None:
    with transaction.atomic():
        updated = Invitation.objects.filter(
            pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True
        ).update(revoked_at=timezone.now())
        if updated:
            audit_record(
                action="member.invite_revoke",
                account=invitation.account,
                actor=actor.user,
                target=invitation,
                ip=ip,
                metadata={"email": invitation.email},
            )


def _lock_owners(account: Account) -> list[Membership]:
    # Every change that can take away an owner locks all owner rows first, in key order:
    # two concurrent demotions cannot both see "another owner remains".
    return lock_in_order(Membership.objects.filter(account=account, role=OWNER))


def _lock_members(
    account: Account, target: Membership, actor: Membership
) -> tuple[int, Membership, Membership]:
    """Lock the owner rows, then target and actor, in primary-key order; return the number of
    owners and fresh copies (the actor's role was read before the locks and may have changed).
    Every path locks the owners first, so they also serialise on them."""
    owners = len(_lock_owners(account))
    pks = [target.pk, actor.pk]
    lock_in_order(Membership.objects.filter(pk__in=pks))
    fresh = {m.pk: m for m in Membership.objects.select_related("user").filter(pk__in=pks)}
    if target.pk not in fresh:
        raise ServiceError(_("This member has already left the account."))
    if actor.pk not in fresh:
        raise ServiceError(_("You are no longer a member of this account."))
    return owners, fresh[target.pk], fresh[actor.pk]


def _check_may_manage(actor: Membership, target: Membership, new_role: str | None) -> None:
    allowed = assignable_roles(actor.role)
    if target.role not in allowed or (new_role is not None and new_role not in allowed):
        raise ServiceError(_("Only an owner can change owners."))


def membership_change_role(
    *, membership: Membership, role: str, actor: Membership, ip: str | None = None
) -> Membership:
    if role not in Role.values:
        raise ServiceError(_("Unknown role."))
    with transaction.atomic():
        owners, target, actor = _lock_members(membership.account, membership, actor)
        if target.role == role:
            return target
        _check_may_manage(actor, target, role)
        if target.role == OWNER and owners == 1:
            raise ServiceError(_("The last owner cannot be demoted. Make someone else owner."))
        old_role = target.role
        target.role = role
        target.save(update_fields=["role"])
        audit_record(
            action="member.role_change",
            account=target.account,
            actor=actor.user,
            target=target,
            ip=ip,
            metadata={"user": target.user.email, "from": old_role, "to": role},
        )
    return target


def membership_remove(*, membership: Membership, actor: Membership, ip: str | None = None) -> None:
    with transaction.atomic():
        owners, target, actor = _lock_members(membership.account, membership, actor)
        leaving = target.user_id == actor.user_id
        if not leaving:
            _check_may_manage(actor, target, None)
        if target.role == OWNER and owners == 1:
            raise ServiceError(_("The last owner cannot be removed. Make someone else owner."))
        audit_record(
            action="member.leave" if leaving else "member.remove",
            account=target.account,
            actor=actor.user,
            target=target,
            ip=ip,
            metadata={"user": target.user.email, "role": target.role},
        )
        target.delete()


def invitations_purge_expired(*, older_than_days: int = 30) -> int:
    """Delete invitations that expired, were accepted or revoked over a month ago."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    deleted, _details = Invitation.objects.filter(
        models.Q(expires_at__lt=cutoff)
        | models.Q(accepted_at__lt=cutoff)
        | models.Q(revoked_at__lt=cutoff)
    ).delete()
    return deleted


# --- Runs of the periodic jobs --------------------------------------------------------------

JOB_RUNS_RETENTION = timedelta(days=30)


def job_runs_purge(*, now: datetime | None = None) -> int:
    """Delete runs older than JOB_RUNS_RETENTION; keeps the table a few thousand rows. The
    runs are recorded by portal/jobs.py (it needs the Celery app); their purge is the
    console's, as the table is."""
    cutoff = (now or timezone.now()) - JOB_RUNS_RETENTION
    deleted, _by_model = JobRun.objects.filter(started_at__lt=cutoff).delete()
    return deleted
