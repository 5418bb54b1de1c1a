"""The Microsoft cloud for the service's tests: the emulator over real HTTPS, seeded through its
control API, and helpers that connect a PBX to it through the service's public API."""

from __future__ import annotations

import html
import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx

from emulator.testing import RunningEmulator
from tests.conftest import Api


@dataclass
class EntraTenant:
    tenant_id: str
    domain: str
    client_id: str
    client_secret: str
    secret_key_id: str
    admin_upn: str
    admin_password: str
    admin_id: str


class Cloud:
    def __init__(self, emulator: RunningEmulator) -> None:
        self.emulator = emulator
        self.base_url = emulator.base_url
        self.control = httpx.Client(
            base_url=f"{emulator.base_url}/_emulator", verify=emulator.ssl_context, timeout=60
        )

    def settings(self) -> dict[str, Any]:
        return {
            "login_base_url": self.base_url,
            "graph_base_url": f"{self.base_url}/v1.0",
            "ca_bundle": self.emulator.ca_path,
        }

    def tenant(
        self,
        users: int = 20,
        groups: int = 4,
        seed: int = 3,
        auto_consent: bool = True,
        **extra: Any,
    ) -> EntraTenant:
        suffix = uuid.uuid4().hex[:8]
        body = {
            "id": str(uuid.uuid4()),
            "display_name": f"Contoso {suffix}",
            "domain": f"contoso{suffix}.onmicrosoft.com",
            "users": users,
            "groups": groups,
            "seed": seed,
            **extra,
        }
        summary = self.control.post("/tenants", json=body).raise_for_status().json()
        app = (
            self.control.post(
                f"/tenants/{summary['id']}/apps",
                json={
                    "display_name": "PBX",
                    "redirect_uris": [
                        "http://127.0.0.1:8000/integration/callback",
                        "http://127.0.0.1:8000/sso/callback",
                    ],
                },
            )
            .raise_for_status()
            .json()
        )
        tenant = EntraTenant(
            tenant_id=summary["id"],
            domain=summary["domain"],
            client_id=app["app_id"],
            client_secret=app["secret"]["value"],
            secret_key_id=app["secret"]["key_id"],
            admin_upn=summary["admin"]["upn"],
            admin_password=summary["admin"]["password"],
            admin_id=summary["admin"]["id"],
        )
        if auto_consent:
            self.auto_consent(tenant, tenant.admin_upn)
        return tenant

    def auto_consent(self, tenant: EntraTenant, upn: str | None) -> None:
        self.control.put(
            f"/tenants/{tenant.tenant_id}/settings", json={"auto_consent_user": upn}
        ).raise_for_status()

    def configure(self, tenant: EntraTenant, **settings: Any) -> None:
        self.control.put(f"/tenants/{tenant.tenant_id}/settings", json=settings).raise_for_status()

    def revoke_sessions(self, tenant: EntraTenant, user_id: str) -> None:
        self.control.post(
            f"/tenants/{tenant.tenant_id}/users/{user_id}/revoke-sessions"
        ).raise_for_status()

    def expire_secret(self, tenant: EntraTenant, key_id: str) -> None:
        url = f"/tenants/{tenant.tenant_id}/apps/{tenant.client_id}/secrets/{key_id}/expire"
        self.control.post(url).raise_for_status()

    def add_secret(self, tenant: EntraTenant, expires_in_days: float = 365) -> dict[str, Any]:
        url = f"/tenants/{tenant.tenant_id}/apps/{tenant.client_id}/secrets"
        body: dict[str, Any] = (
            self.control.post(url, json={"expires_in_days": expires_in_days})
            .raise_for_status()
            .json()
        )
        return body

    def requests(self, path_contains: str = "") -> list[dict[str, Any]]:
        resp = self.control.get(
            "/requests", params={"path_contains": path_contains} if path_contains else None
        )
        body = resp.raise_for_status().json()
        return list(body["value"])

    def clear_requests(self) -> None:
        self.control.delete("/requests").raise_for_status()

    def follow_authorize(self, authorization_url: str) -> dict[str, str]:
        """What the admin's browser does in automatic mode: the form posted back to us, as fields."""
        resp = httpx.get(
            authorization_url, verify=self.emulator.ssl_context, follow_redirects=False
        )
        if resp.status_code in (302, 303):
            return {k: v[0] for k, v in parse_qs(urlparse(resp.headers["location"]).query).items()}
        assert resp.status_code == 200 and "<form method='POST'" in resp.text, resp.text[:300]
        action = re.search(r"action='([^']+)'", resp.text)
        assert action and action.group(1).endswith("/integration/callback")
        return {
            html.unescape(m.group(1)): html.unescape(m.group(2))
            for m in re.finditer(
                r"<input type=['\"]hidden['\"] name=['\"]([^'\"]+)['\"] value=['\"]([^'\"]*)['\"]",
                resp.text,
            )
        }


async def configure(
    api: Api, tenant: EntraTenant, headers: dict[str, str], **extra: Any
) -> httpx.Response:
    """PUT /api/v1/integration with the tenant's app registration (and any extra fields)."""
    body = {
        "client_id": tenant.client_id,
        "tenant_id": tenant.tenant_id,
        "client_secret": tenant.client_secret,
        **extra,
    }
    return await api.client.put("/api/v1/integration", json=body, headers=headers)


async def connect(
    api: Api, cloud: Cloud, tenant: EntraTenant, headers: dict[str, str]
) -> dict[str, Any]:
    """PUT the registration, walk the consent (automatic mode), land on the callback."""
    put = await configure(api, tenant, headers)
    assert put.status_code == 200, put.text
    params = cloud.follow_authorize(put.json()["authorization_url"])
    done = await api.client.post("/integration/callback", data=params)
    assert done.status_code == 200, done.text
    got = await api.client.get("/api/v1/integration", headers=headers)
    body: dict[str, Any] = got.json()
    assert body["status"] == "connected", body
    return body
