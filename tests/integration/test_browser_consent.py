"""The admin's consent in a real browser: Chromium walks the emulator's sign-in and consent pages."""

from __future__ import annotations

from typing import Any

import pytest

from app.config import Settings
from app.main import create_app
from tests.cloud import Cloud
from tests.conftest import CHROMIUM_ARGS, SECRET_KEY, ServedApp, free_port


@pytest.mark.browser
async def test_consent_in_chromium_connects_the_pbx(
    database_url: str, cloud: Cloud, chromium: str, api: Any
) -> None:
    from playwright.async_api import async_playwright

    port = free_port()
    public = f"http://127.0.0.1:{port}"
    tenant = cloud.tenant(auto_consent=False)
    cloud.control.patch(
        f"/tenants/{tenant.tenant_id}/apps/{tenant.client_id}",
        json={"redirect_uris": [f"{public}/integration/callback"]},
    ).raise_for_status()
    pbx, h = await api.new_pbx()
    settings = Settings(
        database_url=database_url,
        secret_key=SECRET_KEY,
        public_base_url=public,
        worker_enabled=False,
        **cloud.settings(),
    )
    import httpx

    with ServedApp(create_app(settings), port) as served:
        # Saving the integration proves the secret against the identity platform: a bound that
        # holds on a busy machine, not httpx's 5 s default.
        async with httpx.AsyncClient(base_url=served.base_url, timeout=60) as client:
            put = await client.put(
                "/api/v1/integration",
                json={
                    "client_id": tenant.client_id,
                    "tenant_id": tenant.tenant_id,
                    "client_secret": tenant.client_secret,
                },
                headers=h,
            )
            assert put.status_code == 200, put.text
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                try:
                    page = await (await browser.new_context(ignore_https_errors=True)).new_page()
                    await page.goto(put.json()["authorization_url"])
                    await page.fill("input[name=loginfmt]", tenant.admin_upn)
                    await page.fill("input[name=passwd]", tenant.admin_password)
                    await page.click("#idSIButton9")
                    await page.wait_for_selector("#permissions")
                    permissions = await page.inner_text("#permissions")
                    assert "Read all users' full profiles" in permissions
                    await page.check("#consent_on_behalf")
                    await page.click("#idBtn_Accept")
                    await page.wait_for_url(f"{public}/integration/callback")
                    assert "Data initialization succeeded" in await page.inner_text("h1")
                finally:
                    await browser.close()
            body = (await client.get("/api/v1/integration", headers=h)).json()
    assert body["status"] == "connected" and body["authorized_account"] == tenant.admin_upn
    assert body["directory_summary"]["users"] > 0 and pbx["id"]
