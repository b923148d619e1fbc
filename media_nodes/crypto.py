"""Encryption at rest of media nodes' API secrets (Fernet: AES-128-CBC + HMAC-SHA256).

The key comes from ``MEDIA_NODE_SECRET_KEYS`` (comma-separated Fernet keys, newest
first, so that keys can be rotated); in the demo it is derived from SECRET_KEY.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def _keys() -> tuple[str, ...]:
    keys = tuple(k.strip() for k in settings.MEDIA_NODE_SECRET_KEYS if k.strip())
    if keys:
        return keys
    derived = hashlib.sha256(("media-node-secrets:" + settings.SECRET_KEY).encode()).digest()
    return (base64.urlsafe_b64encode(derived).decode(),)


def encrypt(clear: str) -> str:
    return _fernet(_keys()).encrypt(clear.encode()).decode()


def reencrypt(token: str) -> str:
    """The same secret encrypted with the newest key (it may have been under any key
    still listed), so that older keys can then be dropped from the list."""
    try:
        return _fernet(_keys()).rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise ValueError(
            "The media node secret cannot be decrypted with the current keys."
        ) from exc


def decrypt(token: str) -> str:
    try:
        return _fernet(_keys()).decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ValueError(
            "The media node secret cannot be decrypted with the current keys."
        ) from exc
