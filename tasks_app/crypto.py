"""Encryption of task secrets at rest (Fernet, key from settings)."""

from __future__ import annotations

import base64
import hashlib
import json
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


@lru_cache(maxsize=4)
def _fernet(key_material: str, secret_key: str) -> Fernet:
    if key_material:
        return Fernet(key_material.encode())
    # Derived so a fresh install works without extra configuration; set SECRETS_ENCRYPTION_KEY in production.
    digest = hashlib.sha256(("anchor-secrets:" + secret_key).encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def _cipher() -> Fernet:
    return _fernet(settings.SECRETS_ENCRYPTION_KEY, settings.SECRET_KEY)


def encrypt_secrets(secrets: dict[str, str]) -> str:
    if not secrets:
        return ""
    return _cipher().encrypt(json.dumps(secrets, sort_keys=True).encode()).decode()


def decrypt_secrets(token: str) -> dict[str, str]:
    if not token:
        return {}
    try:
        return json.loads(_cipher().decrypt(token.encode()))
    except InvalidToken as exc:
        raise ValueError("task secrets cannot be decrypted with the configured key") from exc
