"""Helpers for the emulator's tests: seed tenants and apps through the control API."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from emulator.testing import RunningEmulator

REDIRECT_URI = "http://127.0.0.1:8000/integration/callback"
SSO_REDIRECT_URI = "http://127.0.0.1:8000/sso/callback"
GRAPH_DEFAULT = "https://graph.microsoft.com/.default"


@dataclass
class SeededTenant:
    """A tenant with a registered app (client id and secret) and its admin account."""

    tenant_id: str
    domain: str
    client_id: str
    client_secret: str
    secret_key_id: str
    admin_id: str
    admin_upn: str
    admin_password: str
    authority: str  # for MSAL: https://127.0.0.1:<port>/<tenant id>


def seed_tenant(control: httpx.Client, **body: Any) -> dict[str, Any]:
    """POST /_emulator/tenants with a unique id and domain unless given; returns the summary."""
    suffix = uuid.uuid4().hex[:8]
    body.setdefault("id", str(uuid.uuid4()))
    body.setdefault("display_name", f"Contoso {suffix}")
    body.setdefault("domain", f"contoso{suffix}.onmicrosoft.com")
    response = control.post("/tenants", json=body)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def register_app(control: httpx.Client, tenant_id: str, **body: Any) -> dict[str, Any]:
    """POST /_emulator/tenants/{tid}/apps; the answer holds `secret.value` (shown once)."""
    body.setdefault("display_name", "PBX Microsoft 365 integration")
    body.setdefault("redirect_uris", [REDIRECT_URI, SSO_REDIRECT_URI])
    response = control.post(f"/tenants/{tenant_id}/apps", json=body)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def make_tenant(
    emulator: RunningEmulator, control: httpx.Client, **tenant_body: Any
) -> SeededTenant:
    summary = seed_tenant(control, **tenant_body)
    app = register_app(control, summary["id"])
    return SeededTenant(
        tenant_id=summary["id"],
        domain=summary["domain"],
        client_id=app["app_id"],
        client_secret=app["secret"]["value"],
        secret_key_id=app["secret"]["key_id"],
        admin_id=summary["admin"]["id"],
        admin_upn=summary["admin"]["upn"],
        admin_password=summary["admin"]["password"],
        authority=f"{emulator.base_url}/{summary['id']}",
    )


def app_token(control: httpx.Client, tenant: SeededTenant, **body: Any) -> str:
    """An access token minted by the control API: app-only with the app's roles by default,
    delegated with `user=<id or upn>` and `scopes=[...]`."""
    body.setdefault("app_id", tenant.client_id)
    response = control.post(f"/tenants/{tenant.tenant_id}/tokens", json=body)
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token
