"""A Linkus web sign-in in headless Chromium: the emulator's sign-in and consent pages, then a
stand-in page of the Linkus web client that exchanges the code and shows the extension number."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.responses import HTMLResponse

from app.config import Settings
from app.main import create_app
from tests.cloud import Cloud
from tests.conftest import CHROMIUM_ARGS, SECRET_KEY, Api, ServedApp, free_port
from tests.sso.helpers import sso_scenario

LINKUS_STAND_IN = """<!doctype html>
<html><head><meta charset="utf-8"><title>Linkus Web Client</title></head>
<body><h1>Linkus</h1><p id="status">signing in</p><p>Extension <span id="ext"></span></p>
<script>
(async () => {
  const params = new URLSearchParams(location.search);
  const status = document.getElementById("status");
  if (!params.get("sso_code")) { status.textContent = "error " + params.get("sso_error"); return; }
  const answer = await fetch("/sso/token", {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({code: params.get("sso_code")}),
  });
  if (!answer.ok) { status.textContent = "refused " + answer.status; return; }
  const token = await answer.json();
  const me = await fetch("/sso/userinfo", {headers: {Authorization: "Bearer " + token.access_token}});
  const user = await me.json();
  document.getElementById("ext").textContent = user.number;
  status.textContent = "signed in as " + user.first_name + " " + user.last_name;
})();
</script></body></html>"""


@pytest.mark.browser
async def test_linkus_web_sign_in_in_chromium(
    database_url: str, sync_api: Api, cloud: Cloud, chromium: str
) -> None:
    from playwright.async_api import async_playwright

    sso = await sso_scenario(sync_api, cloud)
    ext, upn = await sso.synced_user(3)
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    tenant = sso.s.tenant
    app_path = f"/tenants/{tenant.tenant_id}/apps/{tenant.client_id}"
    uris = cloud.control.get(app_path).raise_for_status().json()["redirect_uris"]
    cloud.control.patch(
        app_path, json={"redirect_uris": [*uris, f"{public}/sso/callback"]}
    ).raise_for_status()
    await sso.enable([f"{public}/linkus/"])
    cloud.auto_consent(tenant, None)
    settings = Settings(
        database_url=database_url,
        secret_key=SECRET_KEY,
        public_base_url=public,
        worker_enabled=False,
        scheduler_enabled=False,
        **cloud.settings(),
    )
    served_app: Any = create_app(settings)

    async def linkus_page() -> HTMLResponse:
        return HTMLResponse(LINKUS_STAND_IN)

    served_app.add_api_route("/linkus/", linkus_page, methods=["GET"], include_in_schema=False)
    login = f"{public}/sso/{sso.pbx_id}/login?client=web&return_url={public}/linkus/"
    with ServedApp(served_app, port):
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = await (await browser.new_context(ignore_https_errors=True)).new_page()
                await page.goto(login)
                assert page.url.startswith(f"{cloud.base_url}/{tenant.tenant_id}/oauth2/v2.0/")
                await page.fill("input[name=loginfmt]", upn)
                await page.fill("input[name=passwd]", "Passw0rd!")
                await page.click("#idSIButton9")
                await page.wait_for_selector("#permissions")
                scopes = await page.eval_on_selector_all(
                    "#permissions li", "items => items.map(i => i.dataset.scope)"
                )
                await page.click("#idBtn_Accept")
                await page.wait_for_url(f"{public}/linkus/?sso_code=*")
                await page.wait_for_function("document.getElementById('ext').textContent !== ''")
                shown = await page.inner_text("#ext")
                status = await page.inner_text("#status")
            finally:
                await browser.close()
    assert shown == ext["number"]
    assert status == f"signed in as {ext['first_name']} {ext['last_name']}"
    assert set(scopes) <= {"openid", "profile", "email"} and "email" in scopes
