"""Token signing and checking: per-tenant RS256 keys, the JWKS, access tokens for Graph, ID tokens.

Claims follow https://learn.microsoft.com/en-us/entra/identity-platform/access-token-claims-reference
(Graph access tokens are v1.0 tokens: `iss` `https://sts.windows.net/{tid}/`, `aud` Graph,
`appid`, `scp` for delegated and `roles` for application permissions, `idtyp`) and
https://learn.microsoft.com/en-us/entra/identity-platform/id-token-claims-reference (v2.0 ID tokens:
`iss` `{authority host}/{tid}/v2.0`, `aud` the client id, `tid`, `oid`, `nonce`,
`preferred_username`, `name`, `ver` "2.0").
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.responses import JSONResponse

from emulator.errors import graph_error
from emulator.state import App, EmulatorState, SigningKey, Tenant, User

GRAPH_RESOURCE = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_AUDIENCES = (GRAPH_RESOURCE, f"{GRAPH_RESOURCE}/", GRAPH_APP_ID)
# Keys kept in the JWKS: the signing key and the one before it, so tokens signed just before a
# rotation stay valid until they expire; older keys are dropped and their tokens fail.
PUBLISHED_KEYS = 2

# A permission granted also satisfies the ones it implies (a ReadWrite permission covers its Read
# counterpart; Directory.Read.All covers reading users and groups), as in
# https://learn.microsoft.com/en-us/graph/permissions-reference.
IMPLIED: dict[str, tuple[str, ...]] = {
    "Directory.ReadWrite.All": ("Directory.Read.All",),
    "Directory.Read.All": (
        "User.Read.All",
        "User.ReadBasic.All",
        "Group.Read.All",
        "GroupMember.Read.All",
        "Organization.Read.All",
    ),
    "User.ReadWrite.All": ("User.Read.All",),
    "User.Read.All": ("User.ReadBasic.All",),
    "Group.ReadWrite.All": ("Group.Read.All",),
    "Group.Read.All": ("GroupMember.Read.All",),
    "GroupMember.ReadWrite.All": ("GroupMember.Read.All",),
    "Contacts.ReadWrite": ("Contacts.Read",),
    "Contacts.ReadWrite.Shared": ("Contacts.Read.Shared", "Contacts.ReadWrite"),
    "Contacts.Read.Shared": ("Contacts.Read",),
    "MailboxSettings.ReadWrite": ("MailboxSettings.Read",),
    "Presence.ReadWrite": ("Presence.Read",),
    "Presence.ReadWrite.All": ("Presence.Read.All",),
    "Presence.Read.All": ("Presence.Read",),
    "Organization.ReadWrite.All": ("Organization.Read.All",),
}


class GraphAuthError(Exception):
    """A failed Graph authorization check, rendered with `.response()` in Graph's error shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    def response(self, client_request_id: str | None = None) -> JSONResponse:
        headers = {}
        if self.status == 401:
            # Graph names the authority to go to for a token in WWW-Authenticate.
            headers["WWW-Authenticate"] = (
                'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/'
                f'oauth2/authorize", client_id="{GRAPH_APP_ID}"'
            )
        return graph_error(self.status, self.code, self.message, headers, client_request_id)


@dataclass
class Caller:
    """Who calls Graph: the tenant, the app, the signed-in user (None for app-only tokens)."""

    tenant: Tenant
    app: App
    user: User | None
    scopes: set[str] = field(default_factory=set)  # delegated permissions (scp)
    roles: set[str] = field(default_factory=set)  # application permissions (roles)
    claims: dict[str, Any] = field(default_factory=dict)

    @property
    def is_app_only(self) -> bool:
        return self.user is None

    @property
    def permissions(self) -> set[str]:
        """Every permission the token grants, with the ones they imply."""
        return expand_permissions(self.scopes | self.roles)


def expand_permissions(granted: set[str]) -> set[str]:
    result: set[str] = set()
    pending = list(granted)
    while pending:
        permission = pending.pop()
        if permission in result:
            continue
        result.add(permission)
        pending.extend(IMPLIED.get(permission, ()))
    return result


def require(caller: Caller, *any_of: str) -> None:
    """Raise 403 Authorization_RequestDenied unless the token grants one of `any_of`."""
    if not any_of or caller.permissions.intersection(any_of):
        return
    raise GraphAuthError(
        403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
    )


# --- keys -----------------------------------------------------------------------------------


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _new_key() -> SigningKey:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # Entra's kid is the base64url SHA-1 thumbprint of the key's certificate (equal to `x5t`).
    kid = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).rstrip(b"=").decode()  # noqa: S324
    return SigningKey(kid=kid, private_key=private_key)


_common_keys: list[SigningKey] = []
_common_lock = threading.Lock()


def _common_key() -> SigningKey:
    """The cloud's signing key, shared by every tenant as Entra's are (made on first use)."""
    with _common_lock:
        if not _common_keys:
            _common_keys.append(_new_key())
        return _common_keys[0]


def signing_key(tenant: Tenant) -> SigningKey:
    """The tenant's current signing key: the cloud's common key until the tenant's keys are
    rotated, then a key of its own."""
    if not tenant.signing_keys:
        tenant.signing_keys.insert(0, _common_key())
    return tenant.signing_keys[0]


def rotate_keys(tenant: Tenant, keep_previous: bool = True) -> SigningKey:
    """Start signing with a new key; the previous one stays published unless `keep_previous` is
    False. Any older key is removed, and tokens it signed stop validating."""
    signing_key(tenant)
    new = _new_key()
    previous = tenant.signing_keys[: PUBLISHED_KEYS - 1] if keep_previous else []
    tenant.signing_keys[:] = [new, *previous]
    return new


def jwks(state: EmulatorState, tenant: Tenant) -> dict[str, Any]:
    """The JSON Web Key Set of the tenant (published at /{tenant}/discovery/v2.0/keys)."""
    signing_key(tenant)
    keys = []
    for key in tenant.signing_keys:
        numbers = key.private_key.public_key().public_numbers()
        keys.append(
            {
                "kty": "RSA",
                "use": "sig",
                "kid": key.kid,
                "x5t": key.kid,
                "n": _b64url_uint(numbers.n),
                "e": _b64url_uint(numbers.e),
                "alg": "RS256",
                "issuer": id_token_issuer(state, tenant),
            }
        )
    return {"keys": keys}


def _sign(tenant: Tenant, claims: dict[str, Any]) -> str:
    key = signing_key(tenant)
    return jwt.encode(
        claims, key.private_key, algorithm="RS256", headers={"kid": key.kid, "x5t": key.kid}
    )


# --- issuing --------------------------------------------------------------------------------


def id_token_issuer(state: EmulatorState, tenant: Tenant) -> str:
    return f"{state.base_url}/{tenant.id}/v2.0"


def access_token_issuer(tenant: Tenant) -> str:
    return f"https://sts.windows.net/{tenant.id}/"


def issue_access_token(
    state: EmulatorState,
    tenant: Tenant,
    app: App,
    user: User | None,
    scopes: set[str],
    roles: set[str],
    lifetime: int | None = None,
) -> str:
    """A Graph access token: delegated (user and `scp`) or app-only (`roles`)."""
    now = int(time.time())
    lifetime = tenant.settings.access_token_lifetime if lifetime is None else lifetime
    claims: dict[str, Any] = {
        "aud": GRAPH_RESOURCE,
        "iss": access_token_issuer(tenant),
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "appid": app.app_id,
        "app_displayname": app.display_name,
        "appidacr": "1",  # the client authenticated with a secret
        "idp": access_token_issuer(tenant),
        "tid": tenant.id,
        "uti": base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode(),
        "ver": "1.0",
    }
    if user is None:
        claims.update(
            oid=app.service_principal_id,
            sub=app.service_principal_id,
            idtyp="app",
            roles=sorted(roles),
        )
    else:
        claims.update(
            oid=user.id,
            sub=_pairwise_sub(user.id, app.app_id),
            idtyp="user",
            scp=" ".join(sorted(scopes)),
            upn=user.user_principal_name,
            unique_name=user.user_principal_name,
        )
        if user.display_name:
            claims["name"] = user.display_name
        if user.given_name:
            claims["given_name"] = user.given_name
        if user.surname:
            claims["family_name"] = user.surname
    return _sign(tenant, claims)


def issue_id_token(
    state: EmulatorState,
    tenant: Tenant,
    app: App,
    user: User,
    nonce: str | None = None,
    scopes: set[str] | None = None,
) -> str:
    """A v2.0 ID token for `user` signing in to `app`."""
    now = int(time.time())
    scopes = scopes or set()
    claims: dict[str, Any] = {
        "aud": app.app_id,
        "iss": id_token_issuer(state, tenant),
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "sub": _pairwise_sub(user.id, app.app_id),
        "oid": user.id,
        "tid": tenant.id,
        "ver": "2.0",
        "uti": base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode(),
        "aio": base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode(),
    }
    if nonce is not None:
        claims["nonce"] = nonce
    # `preferred_username` and `name` need the profile scope, `email` the email scope.
    if "profile" in scopes or not scopes:
        claims["preferred_username"] = user.user_principal_name
        claims["name"] = user.display_name or ""
    if "email" in scopes and user.mail:
        claims["email"] = user.mail
    tamper = take_id_token_tamper(state, tenant)
    if tamper is not None:
        return tamper.sign(tenant, claims)
    return _sign(tenant, claims)


# --- tampered ID tokens (tests of relying parties) --------------------------------------------

TamperSigning = Literal["tenant", "unknown_key", "forged_kid"]
TAMPER_SIGNING: tuple[str, ...] = ("tenant", "unknown_key", "forged_kid")


@dataclass
class IdTokenTamper:
    """The next `count` ID tokens of a tenant are altered: claims replaced or dropped, and/or signed
    by a key the JWKS does not publish (`unknown_key`: a new kid; `forged_kid`: the tenant's kid
    in the header, another key's signature). What an attacker or a broken proxy would hand over."""

    claims: dict[str, Any] = field(default_factory=dict)
    drop: list[str] = field(default_factory=list)
    signing: TamperSigning = "tenant"
    count: int = 1
    issued: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "claims": self.claims,
            "drop": self.drop,
            "signing": self.signing,
            "count": self.count,
            "issued": self.issued,
        }

    def sign(self, tenant: Tenant, claims: dict[str, Any]) -> str:
        altered = {k: v for k, v in {**claims, **self.claims}.items() if k not in self.drop}
        if self.signing == "tenant":
            return _sign(tenant, altered)
        stranger = _new_key()
        kid = signing_key(tenant).kid if self.signing == "forged_kid" else stranger.kid
        return jwt.encode(
            altered, stranger.private_key, algorithm="RS256", headers={"kid": kid, "x5t": kid}
        )


def id_token_tampering(state: EmulatorState, tenant: Tenant) -> list[IdTokenTamper]:
    pending: dict[str, list[IdTokenTamper]] = state.extra.setdefault("id_token_tampering", {})
    return pending.setdefault(tenant.id, [])


def take_id_token_tamper(state: EmulatorState, tenant: Tenant) -> IdTokenTamper | None:
    """The alteration for the ID token being issued now, if one is pending (oldest first)."""
    pending = id_token_tampering(state, tenant)
    if not pending:
        return None
    tamper = pending[0]
    tamper.issued += 1
    if tamper.issued >= tamper.count:
        pending.pop(0)
    return tamper


def _pairwise_sub(user_id: str, app_id: str) -> str:
    # `sub` is unique per user and per app (pairwise), unlike `oid`.
    digest = hashlib.sha256(f"{user_id}:{app_id}".encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def client_info(tenant: Tenant, user: User) -> str:
    """The `client_info` of a token response (MSAL builds its account id from uid.utid)."""
    raw = json.dumps({"uid": user.id, "utid": tenant.id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# --- checking -------------------------------------------------------------------------------


def verify_graph_token(state: EmulatorState, authorization_header: str | None) -> Caller:
    """Check a Graph request's bearer token; raise GraphAuthError 401 when it is not valid."""
    if not authorization_header or not authorization_header.strip():
        raise GraphAuthError(401, "InvalidAuthenticationToken", "Access token is empty.")
    scheme, _, token = authorization_header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise GraphAuthError(401, "InvalidAuthenticationToken", "Access token is empty.")
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise GraphAuthError(
            401,
            "InvalidAuthenticationToken",
            "IDX14100: JWT is not well formed, there are no dots (.).",
        ) from None
    tenant = state.tenant(str(unverified.get("tid", "")))
    if tenant is None:
        raise GraphAuthError(
            401, "InvalidAuthenticationToken", "Access token validation failure. Invalid issuer."
        )
    key = next((k for k in tenant.signing_keys if k.kid == header.get("kid")), None)
    if key is None:
        raise GraphAuthError(
            401,
            "InvalidAuthenticationToken",
            "IDX10503: Signature validation failed. The token's kid is missing from the keys.",
        )
    try:
        claims = jwt.decode(
            token,
            key.private_key.public_key(),
            algorithms=["RS256"],
            audience=list(GRAPH_AUDIENCES),
            issuer=access_token_issuer(tenant),
            options={"require": ["exp", "iat", "aud", "iss", "tid"]},
        )
    except jwt.ExpiredSignatureError:
        raise GraphAuthError(
            401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired."
        ) from None
    except jwt.InvalidAudienceError:
        raise GraphAuthError(
            401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience."
        ) from None
    except jwt.PyJWTError:
        raise GraphAuthError(
            401, "InvalidAuthenticationToken", "Access token validation failure."
        ) from None
    app = tenant.apps.get(str(claims.get("appid", "")))
    if app is None:
        raise GraphAuthError(401, "InvalidAuthenticationToken", "Access token validation failure.")
    user: User | None = None
    scopes: set[str] = set()
    roles: set[str] = set()
    if claims.get("idtyp") == "user" or "scp" in claims:
        user = tenant.users.get(str(claims.get("oid", "")))
        if user is None:
            raise GraphAuthError(
                401, "InvalidAuthenticationToken", "Access token validation failure."
            )
        scopes = set(str(claims.get("scp", "")).split())
    else:
        roles = set(claims.get("roles") or [])
    return Caller(tenant=tenant, app=app, user=user, scopes=scopes, roles=roles, claims=claims)
