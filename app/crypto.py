"""Encryption at rest (AES-GCM with a key derived from SECRET_KEY) and API-key hashing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = b"v1"


class DecryptionError(Exception):
    """Ciphertext was tampered with or SECRET_KEY changed."""


def derive_key(secret_key: str, purpose: str) -> bytes:
    """A 256-bit key for one purpose, so a key serving one use never serves another."""
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"pbx-entra",
        info=purpose.encode(),
    ).derive(secret_key.encode())


class Box:
    """Authenticated encryption of small secrets; the associated data binds a value to its row."""

    def __init__(self, secret_key: str) -> None:
        self._aead = AESGCM(derive_key(secret_key, "at-rest-encryption"))

    def encrypt(self, plaintext: str, associated: str = "") -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), associated.encode())
        return (_VERSION + b":" + base64.urlsafe_b64encode(nonce + sealed)).decode()

    def decrypt(self, token: str, associated: str = "") -> str:
        try:
            version, payload = token.encode().split(b":", 1)
            if version != _VERSION:
                raise DecryptionError("unknown ciphertext version")
            raw = base64.urlsafe_b64decode(payload)
            return self._aead.decrypt(raw[:12], raw[12:], associated.encode()).decode()
        except (ValueError, InvalidTag) as exc:
            raise DecryptionError("cannot decrypt a stored secret") from exc


def new_api_key() -> str:
    return "pbx_" + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    # API keys carry 256 bits of entropy: a fast hash is enough, no salt or KDF needed.
    return hashlib.sha256(key.encode()).hexdigest()


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def secret_hint(value: str) -> str:
    return "…" + value[-4:] if len(value) >= 8 else "…"
