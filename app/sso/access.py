"""The service's own access tokens for Linkus: HS256 JWTs signed with a key derived from SECRET_KEY.

A token names the extension (`sub`), its PBX (`pbx`), its number (`ext`) and the Entra object id
that signed in (`oid`); it is good for one hour, and every request also checks the extension's
current state (see service.current_user), so signing-out by the admin takes effect at once.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jwt

from app.crypto import derive_key

ACCESS_TOKEN_SECONDS = 3600
AUDIENCE = "pbx-entra/linkus"
KEY_PURPOSE = "sso-access-token"
CLOCK_SKEW_SECONDS = 30


class InvalidAccessToken(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class AccessClaims:
    extension_id: str
    pbx_id: str
    number: str
    oid: str
    client: str
    issued_at_ms: int


@lru_cache(maxsize=8)
def _key(secret_key: str) -> bytes:
    return derive_key(secret_key, KEY_PURPOSE)


def issue(
    secret_key: str,
    issuer: str,
    *,
    extension_id: str,
    pbx_id: str,
    number: str,
    oid: str,
    client: str,
    now: int | None = None,
) -> str:
    issued_ms = int(time.time() * 1000) if now is None else now * 1000
    issued = issued_ms // 1000
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": extension_id,
        "pbx": pbx_id,
        "ext": number,
        "oid": oid,
        "client": client,
        "iat": issued,
        # In milliseconds: a session is compared with settings saved within the same second.
        "iat_ms": issued_ms,
        "nbf": issued,
        "exp": issued + ACCESS_TOKEN_SECONDS,
        "jti": secrets.token_urlsafe(12),
    }
    return jwt.encode(claims, _key(secret_key), algorithm="HS256", headers={"typ": "at+jwt"})


def verify(secret_key: str, issuer: str, token: str) -> AccessClaims:
    try:
        claims = jwt.decode(
            token,
            _key(secret_key),
            algorithms=["HS256"],
            audience=AUDIENCE,
            issuer=issuer,
            leeway=CLOCK_SKEW_SECONDS,
            options={"require": ["exp", "iat", "sub", "pbx", "oid", "aud", "iss"]},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidAccessToken("expired") from None
    except jwt.PyJWTError as exc:
        raise InvalidAccessToken(type(exc).__name__) from None
    return AccessClaims(
        extension_id=str(claims["sub"]),
        pbx_id=str(claims["pbx"]),
        number=str(claims.get("ext", "")),
        oid=str(claims["oid"]),
        client=str(claims.get("client", "")),
        issued_at_ms=int(claims.get("iat_ms") or int(claims["iat"]) * 1000),
    )
