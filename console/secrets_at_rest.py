"""Secrets the database must not hold readable, in the two forms the console uses.

- **Encrypted** (Fernet, a key from the environment): what must be read back, such as an
  authenticator app's seed, which computes every code. The key is derived as the upstream
  secrets' is (gateway/upstream.py): `TWO_FACTOR_SECRET_KEY`, by default derived from
  `SECRET_KEY`.
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


def _fernet() -> Fernet:
    key = hashlib.sha256(settings.TWO_FACTOR_SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt_text(text: str) -> str:
    return _fernet().encrypt(text.encode()).decode()


def decrypt_text(token: str) -> str:
    return _fernet().decrypt(token.encode()).decode()


def current_pepper_version() -> int:
    return max(settings.API_KEY_PEPPERS)


def keyed_hash(secret: str, *, purpose: str, pepper_version: int) -> str:
    pepper = settings.API_KEY_PEPPERS[pepper_version]
    message = f"{purpose}:{secret}".encode()
    return hmac.new(pepper.encode(), message, hashlib.sha256).hexdigest()
