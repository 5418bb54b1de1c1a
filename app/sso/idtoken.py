"""ID-token validation against the tenant's published keys (JWKS), cached per tenant.

The keys are fetched once and kept; a token signed with a `kid` the cache does not know makes one
refetch (Entra rolls its keys over), and a kid still unknown after it is refused. Concurrent
validations share a refetch. Claims checked: RS256 signature, `iss` = `<LOGIN_BASE_URL>/<tid>/v2.0`,
`aud` = the client id, `tid`, `nonce`, `exp`/`nbf`/`iat` with a small clock skew.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt

CLOCK_SKEW_SECONDS = 60
# Keys are re-read at least this often even without an unknown kid.
JWKS_MAX_AGE_SECONDS = 24 * 3600
REQUIRED_CLAIMS = ["exp", "iat", "nbf", "iss", "aud", "tid", "oid", "nonce"]


class InvalidIdToken(Exception):
    """The ID token can't be trusted; `reason` says why (logged, never the token)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeysUnavailable(Exception):
    """The tenant's JWKS could not be read."""


@dataclass
class _Cached:
    keys: dict[str, Any]
    fetched_at: float


@dataclass
class SigningKeys:
    http: httpx.AsyncClient
    _cache: dict[str, _Cached] = field(default_factory=dict)
    _locks: defaultdict[str, asyncio.Lock] = field(
        default_factory=lambda: defaultdict(asyncio.Lock)
    )
    fetches: int = 0

    async def _fetch(self, jwks_uri: str) -> _Cached:
        try:
            resp = await self.http.get(jwks_uri, headers={"Accept": "application/json"})
            resp.raise_for_status()
            keyset = jwt.PyJWKSet.from_dict(resp.json())
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
            raise KeysUnavailable(f"{type(exc).__name__}: {exc}") from None
        self.fetches += 1
        keys = {k.key_id: k for k in keyset.keys if k.key_id}
        cached = _Cached(keys=keys, fetched_at=time.monotonic())
        self._cache[jwks_uri] = cached
        return cached

    async def key(self, jwks_uri: str, kid: str) -> Any | None:
        """The public key for `kid`, refetching the set once when it is not known."""
        cached = self._cache.get(jwks_uri)
        fresh = cached is not None and time.monotonic() - cached.fetched_at < JWKS_MAX_AGE_SECONDS
        if cached is not None and fresh and kid in cached.keys:
            return cached.keys[kid].key
        seen = cached.fetched_at if cached else None
        async with self._locks[jwks_uri]:
            current = self._cache.get(jwks_uri)
            if current is None or current.fetched_at == seen:
                # Nobody refetched while this one waited: fetch now (once).
                current = await self._fetch(jwks_uri)
        found = current.keys.get(kid)
        return found.key if found is not None else None


def issuer(login_base_url: str, tenant_id: str) -> str:
    return f"{login_base_url}/{tenant_id}/v2.0"


def jwks_uri(login_base_url: str, tenant_id: str) -> str:
    return f"{login_base_url}/{tenant_id}/discovery/v2.0/keys"


async def validate(
    keys: SigningKeys,
    token: str,
    *,
    login_base_url: str,
    tenant_id: str,
    client_id: str,
    nonce: str,
) -> dict[str, Any]:
    """The verified claims of `token`, or InvalidIdToken with the reason."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise InvalidIdToken("malformed token") from None
    if header.get("alg") != "RS256":
        raise InvalidIdToken(f"unexpected signing algorithm {header.get('alg')!r}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidIdToken("no key id in the header")
    key = await keys.key(jwks_uri(login_base_url, tenant_id), kid)
    if key is None:
        raise InvalidIdToken("signed with a key the tenant does not publish")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=["RS256"],
            audience=client_id,
            issuer=issuer(login_base_url, tenant_id),
            leeway=CLOCK_SKEW_SECONDS,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidIdToken("expired") from None
    except jwt.ImmatureSignatureError:
        raise InvalidIdToken("not valid yet (nbf/iat in the future)") from None
    except jwt.InvalidAudienceError:
        raise InvalidIdToken("wrong audience") from None
    except jwt.InvalidIssuerError:
        raise InvalidIdToken("wrong issuer") from None
    except jwt.InvalidSignatureError:
        raise InvalidIdToken("bad signature") from None
    except jwt.MissingRequiredClaimError as exc:
        raise InvalidIdToken(f"missing claim {exc.claim}") from None
    except jwt.PyJWTError as exc:
        raise InvalidIdToken(f"not valid ({type(exc).__name__})") from None
    if str(claims.get("tid", "")).lower() != tenant_id.lower():
        raise InvalidIdToken("issued for another tenant")
    if not hmac.compare_digest(str(claims.get("nonce", "")).encode(), nonce.encode()):
        raise InvalidIdToken("nonce does not match the sign-in request")
    return claims
