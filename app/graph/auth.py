"""MSAL from async code: confidential clients per app registration, run in worker threads.

MSAL is blocking, so each call runs through `asyncio.to_thread`. Clients are built once per
(authority, client id, secret) and reused: the constructor fetches the authority's metadata.
Token caches are not kept here: the caller loads and stores them (encrypted) around each call.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msal
import requests

GRAPH_APP_SCOPE = "https://graph.microsoft.com/.default"
# Delegated Graph permissions the features need (read-only on purpose: the sync is one-way).
# MSAL adds openid, profile and offline_access itself and refuses them in this list.
DELEGATED_SCOPES = [
    "User.Read.All",
    "Group.Read.All",
    "Directory.Read.All",
    "Contacts.Read",
    "Contacts.Read.Shared",
    "MailboxSettings.Read",
    "Presence.Read.All",
]
_AADSTS = re.compile(r"AADSTS(\d+)")
# Errors after which a refresh will never succeed without an admin's action.
PERMANENT_ERRORS = {
    "invalid_grant",
    "invalid_client",
    "unauthorized_client",
    "interaction_required",
}


class TokenError(Exception):
    """The identity platform refused: `error` is OAuth's code, `aadsts` the AADSTS number."""

    def __init__(self, error: str, description: str, aadsts: str | None = None) -> None:
        self.error = error
        self.description = description
        self.aadsts = aadsts
        super().__init__(f"{error}: {description}")

    @property
    def code(self) -> str:
        return f"AADSTS{self.aadsts}" if self.aadsts else self.error

    @property
    def message(self) -> str:
        # The first line of Microsoft's description; trace and correlation ids follow it.
        return self.description.splitlines()[0] if self.description else self.error

    @property
    def permanent(self) -> bool:
        return self.error in PERMANENT_ERRORS

    @classmethod
    def from_result(cls, result: dict[str, Any]) -> TokenError:
        description = str(result.get("error_description") or "")
        codes = result.get("error_codes") or []
        match = _AADSTS.search(description)
        aadsts = str(codes[0]) if codes else (match.group(1) if match else None)
        return cls(str(result.get("error") or "token_error"), description, aadsts)


@dataclass(frozen=True)
class AppCredentials:
    tenant_id: str
    client_id: str
    client_secret: str

    @property
    def fingerprint(self) -> str:
        raw = f"{self.tenant_id}|{self.client_id}|{self.client_secret}".encode()
        return hashlib.sha256(raw).hexdigest()


class Msal:
    """Builds and reuses MSAL clients against one identity platform (LOGIN_BASE_URL)."""

    def __init__(self, login_base_url: str, ca_bundle: Path | None, timeout: float = 30) -> None:
        self.login_base_url = login_base_url.rstrip("/")
        self.ca_bundle = ca_bundle
        self.timeout = timeout
        self._clients: dict[str, msal.ConfidentialClientApplication] = {}
        self._client_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def _http(self) -> requests.Session:
        session = requests.Session()
        # With trust_env on, REQUESTS_CA_BUNDLE would silently override `verify`.
        session.trust_env = False
        session.verify = str(self.ca_bundle) if self.ca_bundle else True
        return session

    def _new_client(
        self, creds: AppCredentials, cache: msal.SerializableTokenCache | None
    ) -> msal.ConfidentialClientApplication:
        custom = self.login_base_url != "https://login.microsoftonline.com"
        try:
            return msal.ConfidentialClientApplication(
                creds.client_id,
                client_credential=creds.client_secret,
                authority=f"{self.login_base_url}/{creds.tenant_id}",
                http_client=self._http(),
                token_cache=cache,
                timeout=self.timeout,
                instance_discovery=False if custom else None,
            )
        except ValueError as exc:
            # MSAL raises ValueError when the authority's metadata can't be read (unknown tenant).
            raise TokenError("invalid_tenant", str(exc)) from None
        except requests.RequestException as exc:
            raise TokenError("login_unreachable", f"{type(exc).__name__}: {exc}") from None

    def client(self, creds: AppCredentials) -> msal.ConfidentialClientApplication:
        with self._lock:
            app = self._clients.get(creds.fingerprint)
        if app is None:
            app = self._new_client(creds, msal.SerializableTokenCache())
            with self._lock:
                app = self._clients.setdefault(creds.fingerprint, app)
        return app

    def forget(self, creds: AppCredentials) -> None:
        with self._lock:
            self._clients.pop(creds.fingerprint, None)

    # Blocking operations (run them through the async wrappers below) ----------------------

    def _prove_secret(self, creds: AppCredentials) -> None:
        # A fresh client with an empty cache: the proof must reach the token endpoint.
        app = self._new_client(creds, msal.SerializableTokenCache())
        try:
            result = app.acquire_token_for_client(scopes=[GRAPH_APP_SCOPE])
        except requests.RequestException as exc:
            raise TokenError("login_unreachable", f"{type(exc).__name__}: {exc}") from None
        if "access_token" not in result:
            raise TokenError.from_result(result)

    def _begin(self, creds: AppCredentials, redirect_uri: str, state: str) -> dict[str, Any]:
        flow: dict[str, Any] = self.client(creds).initiate_auth_code_flow(
            DELEGATED_SCOPES,
            redirect_uri=redirect_uri,
            state=state,
            prompt="consent",
            # The code comes back in a POSTed form, never in a URL (history, proxies, logs).
            response_mode="form_post",
        )
        return flow

    def _redeem(
        self, creds: AppCredentials, flow: dict[str, Any], params: dict[str, str]
    ) -> tuple[dict[str, Any], str]:
        cache = msal.SerializableTokenCache()
        app = self._new_client(creds, cache)
        try:
            result = app.acquire_token_by_auth_code_flow(flow, params)
        except ValueError as exc:  # state mismatch and other flow errors
            raise TokenError("invalid_flow", str(exc)) from None
        except requests.RequestException as exc:
            raise TokenError("login_unreachable", f"{type(exc).__name__}: {exc}") from None
        if "access_token" not in result:
            raise TokenError.from_result(result)
        return result, cache.serialize()

    def _silent(
        self, creds: AppCredentials, cache_blob: str, home_account_id: str, force: bool
    ) -> tuple[str, str | None]:
        app = self.client(creds)
        cache: msal.SerializableTokenCache = app.token_cache
        with self._lock:
            client_lock = self._client_locks.setdefault(creds.fingerprint, threading.Lock())
        # PBXes sharing one registration share its client: the cache contents are swapped in
        # for each call, one call at a time.
        with client_lock:
            cache.deserialize(cache_blob)
            account = next(
                (a for a in app.get_accounts() if a.get("home_account_id") == home_account_id),
                None,
            )
            if account is None:
                raise TokenError(
                    "no_account", "The authorization account is not in the token cache."
                )
            try:
                result = app.acquire_token_silent_with_error(
                    DELEGATED_SCOPES, account, force_refresh=force
                )
            except requests.RequestException as exc:
                raise TokenError("login_unreachable", f"{type(exc).__name__}: {exc}") from None
            if not result or "access_token" not in result:
                raise TokenError.from_result(result or {"error": "no_token"})
            changed = cache.serialize() if cache.has_state_changed else None
            cache.has_state_changed = False
        return str(result["access_token"]), changed

    # Async API ----------------------------------------------------------------------------

    async def prove_secret(self, creds: AppCredentials) -> None:
        await asyncio.to_thread(self._prove_secret, creds)

    async def begin_consent(
        self, creds: AppCredentials, redirect_uri: str, state: str
    ) -> dict[str, Any]:
        return await asyncio.to_thread(self._begin, creds, redirect_uri, state)

    async def redeem(
        self, creds: AppCredentials, flow: dict[str, Any], params: dict[str, str]
    ) -> tuple[dict[str, Any], str]:
        return await asyncio.to_thread(self._redeem, creds, flow, params)

    async def silent_token(
        self, creds: AppCredentials, cache_blob: str, home_account_id: str, *, force: bool = False
    ) -> tuple[str, str | None]:
        """An access token for the authorization account; the new cache when it changed."""
        return await asyncio.to_thread(self._silent, creds, cache_blob, home_account_id, force)
