"""Writes that open or change an account across several apps: opening an account (the
account, its Default project and its wallet), signing up, the email verification that grants
the starter pack, and the settings change whose time zone moves the month counters and the
daily roll-ups. The core of each (the rows of console's own models) is console/services.py.
"""

from datetime import datetime

from django.conf import settings
from django.db import transaction

from billing.services import (
    month_spend_rebuild,
    starter_pack_grant,
    time_zone_change_check,
    wallet_lock,
    wallet_open,
)
from console.models import Account, AuditEvent, Tier, User
from console.services import (
    account_lock,
    account_settings_changes,
    account_settings_save,
    account_with_owner_create,
    email_verification_check,
    email_verification_send,
    user_create,
    user_mark_email_verified,
    user_set_starter_pack_account,
)
from projects.services import default_project_name, project_create
from usage.tasks import rebuild_rollups


def account_create(
    *,
    owner: User,
    name: str,
    currency: str = settings.DEFAULT_CURRENCY,
    time_zone: str = settings.DEFAULT_ACCOUNT_TIME_ZONE,
    tier: Tier | None = None,
    actor_kind: str = AuditEvent.ActorKind.USER,
) -> Account:
    """A new account owned by `owner`, with its Default project and an empty wallet. No
    starter pack: that is a person's, once (`user_signup`, `email_verify`). Refused when the
    owner already owns as many accounts as they may."""
    with transaction.atomic():
        account = account_with_owner_create(
            owner=owner,
            name=name,
            currency=currency,
            time_zone=time_zone,
            tier=tier,
            actor_kind=actor_kind,
        )
        project_create(
            account=account,
            name=default_project_name(),
            is_default=True,
            actor=owner,
            actor_kind=actor_kind,
        )
        wallet_open(account=account)
    return account


def user_signup(
    *,
    email: str,
    password: str,
    name: str,
    account_name: str,
    currency: str,
    time_zone: str = settings.DEFAULT_ACCOUNT_TIME_ZONE,
    language: str = "",
    email_verified: bool = False,
    tier: Tier | None = None,
    actor_kind: str = AuditEvent.ActorKind.USER,
    starter_pack: bool = True,
) -> tuple[User, Account]:
    """A new user who owns a new account. Sends the verification email after commit.

    With `starter_pack`, the new account is the person's starter-pack account: it gets the
    pack when the address is verified, at once when it already is (a command's sign-up)."""
    with transaction.atomic():
        user = user_create(
            email=email,
            password=password,
            name=name,
            language=language,
            email_verified=email_verified,
        )
        account = account_create(
            owner=user,
            name=account_name,
            currency=currency,
            time_zone=time_zone,
            tier=tier,
            actor_kind=actor_kind,
        )
        if starter_pack:
            user_set_starter_pack_account(user=user, account=account)
            if email_verified:
                starter_pack_grant(account=account)
        if not email_verified:
            # Queued in this transaction, sent after commit (retried: console/emails.py).
            email_verification_send(user=user)
    return user, account


def email_verify(*, token: str) -> User:
    """Verify the address a link names; the first verification grants the starter pack to
    the person's starter-pack account."""
    user = email_verification_check(token=token)
    with transaction.atomic():
        # Of two requests at once only one verifies (console.services.user_mark_email_verified),
        # so only one of them grants the pack.
        verified_now = user_mark_email_verified(user=user)
        if verified_now and user.starter_pack_account_id is not None:
            account = Account.objects.filter(pk=user.starter_pack_account_id).first()
            if account is not None:
                starter_pack_grant(account=account)
    user.email_verified = True
    return user


def account_update(
    *,
    account: Account,
    actor: User,
    name: str,
    time_zone: str,
    currency: str,
    store_prompt_content: bool | None = None,
    ip: str | None = None,
    now: datetime | None = None,
    actor_kind: str = AuditEvent.ActorKind.USER,
) -> Account:
    """An account's settings; a time-zone change also rebuilds the month counters and the
    daily roll-ups (refused while a stated month is still going on in the new zone)."""
    with transaction.atomic():
        # The wallet first, as every charge locks it (then the account, when money first
        # moves): a time-zone change and a charge are serialised, in one order.
        wallet_lock(account)
        locked = account_lock(account=account)
        changes = account_settings_changes(
            account=locked,
            name=name,
            time_zone=time_zone,
            currency=currency,
            store_prompt_content=store_prompt_content,
        )
        if not changes:
            return locked
        if "time_zone" in changes:
            time_zone_change_check(account=locked, time_zone=time_zone, now=now)
        account_settings_save(
            account=locked, changes=changes, actor=actor, ip=ip, actor_kind=actor_kind
        )
        if "time_zone" in changes:
            # Months not yet stated follow the new zone: their counters are rebuilt here,
            # under the wallet lock, so caps and the budget read them right away.
            month_spend_rebuild(account=locked, now=now)
            # Daily roll-ups are days in the account's time zone: they move with it.
            transaction.on_commit(lambda: rebuild_rollups.delay(locked.pk), robust=True)
    return locked
