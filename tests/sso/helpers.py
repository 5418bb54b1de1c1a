"""SSO scenarios: a PBX connected to an emulated tenant with its users synced and SSO on, and the
browser's part of the sign-in (the emulator signs in the chosen user at once)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.cloud import Cloud
from tests.conftest import Api
from tests.sync.helpers import Scenario, scenario

RETURN_URL = "https://pbx.example.com/linkus/"


@dataclass
class Landing:
    """Where the browser ended after the callback: the return URL and its parameters."""

    status: int
    location: str
    params: dict[str, str]
    text: str = ""


class SsoScenario:
    def __init__(self, s: Scenario) -> None:
        self.s = s
        self.api = s.api
        self.cloud = s.cloud
        self.pbx_id = s.pbx["id"]

    async def enable(self, urls: list[str] | None = None, enabled: bool = True) -> dict[str, Any]:
        body = {"enabled": enabled, "allowed_return_urls": urls or [RETURN_URL]}
        return await self.s.put_rules("sso", body)

    async def login(
        self, client: str = "web", return_url: str = RETURN_URL, pbx_id: str | None = None
    ) -> httpx.Response:
        return await self.api.client.get(
            f"/sso/{pbx_id or self.pbx_id}/login",
            params={"client": client, "return_url": return_url},
        )

    def authorize(self, url: str, upn: str) -> dict[str, str]:
        """The emulator signs `upn` in (automatic mode): the parameters sent to the callback."""
        self.cloud.auto_consent(self.s.tenant, upn)
        resp = httpx.get(url, verify=self.cloud.emulator.ssl_context, follow_redirects=False)
        assert resp.status_code == 302, resp.text[:300]
        location = urlsplit(resp.headers["location"])
        assert location.path == "/sso/callback", location
        return {k: v[0] for k, v in parse_qs(location.query).items()}

    async def callback(self, params: dict[str, str]) -> Landing:
        resp = await self.api.client.get("/sso/callback", params=params)
        if resp.status_code != 302:
            return Landing(resp.status_code, "", {}, resp.text)
        location = resp.headers["location"]
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        return Landing(302, location, query)

    async def sign_in(self, upn: str, **login: Any) -> Landing:
        """The whole redirect dance for one user, up to the return URL."""
        start = await self.login(**login)
        assert start.status_code == 302, start.text
        return await self.callback(self.authorize(start.headers["location"], upn))

    async def token(self, code: str, **extra: Any) -> httpx.Response:
        return await self.api.client.post("/sso/token", json={"code": code, **extra})

    async def access_token(self, upn: str) -> tuple[str, dict[str, Any]]:
        landing = await self.sign_in(upn)
        assert "sso_code" in landing.params, landing
        resp = await self.token(landing.params["sso_code"])
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body["access_token"], body

    def tamper(self, **body: Any) -> None:
        self.s.control("POST", "/id-token-tampering", json=body)

    async def synced_user(self, index: int = 0) -> tuple[dict[str, Any], str]:
        """A synced extension and the userPrincipalName of its Entra user."""
        synced = sorted((await self.s.synced()).values(), key=lambda e: e["number"])
        ext = synced[index]
        return ext, self.s.users()[ext["entra_user_id"]].user_principal_name


async def sso_scenario(api: Api, cloud: Cloud, **tenant_kw: Any) -> SsoScenario:
    """Connected, users synced, SSO on for RETURN_URL."""
    s = await scenario(api, cloud, **tenant_kw)
    await s.put_rules("user-sync", {"enabled": True})
    await s.run_worker()
    sso = SsoScenario(s)
    await sso.enable()
    return sso


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
