"""Factories for tests: each builds through the same services the product uses."""

import itertools

from billing.services import starter_pack_grant
from console.models import Account, Membership, User
from portal.services import account_create

_sequence = itertools.count(1)
PASSWORD = "correct-horse-battery-staple-42"


def make_user(email: str | None = None, *, verified: bool = True, **fields) -> User:
    email = email or f"user{next(_sequence)}@example.com"
    return User.objects.create_user(
        email=email, password=PASSWORD, email_verified=verified, **fields
    )


def make_account(
    owner: User | None = None, *, name: str = "Acme", starter_pack: bool = True, **fields
) -> Account:
    """An account as a verified sign-up leaves it: with the starter pack unless told not to
    (for tests, each account made here can have one; the product grants one per person)."""
    account = account_create(owner=owner or make_user(), name=name, **fields)
    if starter_pack:
        starter_pack_grant(account=account)
    return account


def add_member(account: Account, role: str, user: User | None = None) -> Membership:
    return Membership.objects.create(account=account, user=user or make_user(), role=role)


def login_verified(client, user: User):
    """Sign the test client in as `user` in a session verified by two-factor authentication,
    as the back-office and the staff pages require: the user gets a confirmed authenticator
    app (if they have none) and the session is marked as verified by it, as the sign-in's
    second step does."""
    from django_otp import DEVICE_ID_SESSION_KEY

    from console.models import AuthenticatorApp

    device = AuthenticatorApp.objects.filter(user=user, confirmed=True).first()
    if device is None:
        device = AuthenticatorApp.objects.create(user=user, name="test app", confirmed=True)
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client
