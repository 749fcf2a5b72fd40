"""Secrets the database must not hold readable, in the two forms the console uses.

- **Encrypted** (Fernet, a key from the environment): what must be read back, such as an
  authenticator app's seed, which computes every code (`TWO_FACTOR_SECRET_KEY`), or a
  credential the console presents to someone else: an upstream's API key, a webhook's
  signing secret (`UPSTREAM_SECRET_KEY`). Both keys are by default derived from `SECRET_KEY`.
- **Keyed hash** (HMAC-SHA256 with the API keys' versioned pepper, the version stored beside
  the hash): what only has to be recognised, such as a recovery code or a one-time link. A
  stolen database alone cannot test guesses against it. Each kind of secret hashes under its
  own `purpose` prefix, so a hash of one kind never matches another.
"""

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet
from django.conf import settings


def fernet(key_material: str) -> Fernet:
    """The Fernet of a key from the environment (any text: its SHA-256 is the key). One
    derivation for every encrypted secret: upstream secrets (UPSTREAM_SECRET_KEY), two-factor
    seeds (TWO_FACTOR_SECRET_KEY) and queued email bodies (their own prefix on
    UPSTREAM_SECRET_KEY)."""
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(key_material.encode()).digest()))


def encrypt(text: str, *, key_material: str) -> str:
    """`text` encrypted under that key (empty stays empty: nothing to hide)."""
    return fernet(key_material).encrypt(text.encode()).decode() if text else ""


def decrypt(token: str, *, key_material: str) -> str:
    return fernet(key_material).decrypt(token.encode()).decode() if token else ""


def encrypt_secret(secret: str) -> str:
    """A credential the console presents to someone else (an upstream route's API key, a
    webhook endpoint's signing secret), encrypted under UPSTREAM_SECRET_KEY. The gateway and
    the webhooks share it, so both read it from here."""
    return encrypt(secret, key_material=settings.UPSTREAM_SECRET_KEY)


def decrypt_secret(token: str) -> str:
    return decrypt(token, key_material=settings.UPSTREAM_SECRET_KEY)


def encrypt_text(text: str) -> str:
    return encrypt(text, key_material=settings.TWO_FACTOR_SECRET_KEY)


def decrypt_text(token: str) -> str:
    return decrypt(token, key_material=settings.TWO_FACTOR_SECRET_KEY)


def current_pepper_version() -> int:
    return max(settings.API_KEY_PEPPERS)


def pepper_hash(message: str, *, pepper_version: int) -> str:
    """HMAC-SHA256 of `message` under the API keys' pepper of that version."""
    pepper = settings.API_KEY_PEPPERS[pepper_version]
    return hmac.new(pepper.encode(), message.encode(), hashlib.sha256).hexdigest()


def keyed_hash(secret: str, *, purpose: str, pepper_version: int) -> str:
    return pepper_hash(f"{purpose}:{secret}", pepper_version=pepper_version)
