"""Factories for tests: each builds through the same services the product uses."""

import itertools

from console.models import Account, Membership, User
from console.services import account_create

_sequence = itertools.count(1)
PASSWORD = "correct-horse-battery-staple-42"


def make_user(email: str | None = None, *, verified: bool = True, **fields) -> User:
    email = email or f"user{next(_sequence)}@example.com"
    return User.objects.create_user(
        email=email, password=PASSWORD, email_verified=verified, **fields
    )


def make_account(owner: User | None = None, *, name: str = "Acme", **fields) -> Account:
    return account_create(owner=owner or make_user(), name=name, **fields)


def add_member(account: Account, role: str, user: User | None = None) -> Membership:
    return Membership.objects.create(account=account, user=user or make_user(), role=role)
