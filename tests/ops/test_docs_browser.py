"""The interactive docs work offline: Chromium, with everything outside the service's own origin
blocked, renders every operation in Swagger UI and ReDoc and calls the API through "Try it out"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.main import create_app
from tests.conftest import ADMIN_KEY, CHROMIUM_ARGS, SECRET_KEY, ServedApp, free_port

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def contract_operations(repo_root: Path) -> list[tuple[str, str]]:
    spec = json.loads((repo_root / "openapi" / "openapi.json").read_text())
    return [(m, p) for p, item in spec["paths"].items() for m in item if m in METHODS]


async def offline_page(browser: Any, origin: str) -> tuple[Any, list[str], list[str]]:
    """A page whose requests outside `origin` are aborted; those, and console errors, are recorded."""
    blocked: list[str] = []
    errors: list[str] = []
    context = await browser.new_context()
    context.on("console", lambda m: m.type == "error" and errors.append(m.text))

    async def route(r: Any) -> None:
        url = r.request.url
        if url == origin or url.startswith(origin + "/"):
            await r.continue_()
        else:
            blocked.append(url)
            await r.abort()

    await context.route("**/*", route)
    return await context.new_page(), blocked, errors


async def authorize(page: Any, scheme: str, key: str) -> None:
    """Swagger UI's Authorize dialog: the key for one bearer scheme."""
    await page.click("button.authorize")
    box = page.locator(".auth-container", has=page.locator(f"h4:has-text('{scheme}')"))
    await box.locator("input").fill(key)
    await box.locator("button.authorize").click()
    await box.locator("button:has-text('Logout')").wait_for()
    await box.locator("button.btn-done").click()


async def try_it_out(page: Any, tag: str, operation_id: str) -> Any:
    """Expand an operation in Swagger UI and switch it to "Try it out"."""
    block = page.locator(f"#operations-{tag}-{operation_id}")
    await block.locator(".opblock-summary").first.click()
    await block.locator("button.try-out__btn").click()
    return block


async def execute(page: Any, block: Any) -> tuple[str, str, str]:
    """Press Execute; return the status, request URL and body that Swagger UI shows."""
    async with page.expect_response(lambda r: "/api/" in r.url) as answer:
        await block.locator("button.execute").click()
    code = str((await answer.value).status)
    shown = block.locator(".live-responses-table .response .response-col_status", has_text=code)
    await shown.first.wait_for()
    status = (await shown.first.inner_text()).split()[0]
    url = (await block.locator(".request-url pre").inner_text()).strip()
    body = await block.locator(
        ".live-responses-table .response-col_description pre"
    ).first.inner_text()
    return status, url, body


@pytest.mark.browser
# The pages and their assets are the same on either database: one is enough.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_swagger_ui_and_redoc_work_without_internet(
    database_url: str, api: Any, chromium: str, repo_root: Path, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    operations = contract_operations(repo_root)
    assert len(operations) > 50
    pbx, h = await api.new_pbx()
    pbx_key = h["Authorization"].removeprefix("Bearer ")
    port = free_port()
    settings = Settings(
        database_url=database_url,
        secret_key=SECRET_KEY,
        admin_api_key=ADMIN_KEY,
        public_base_url=f"http://127.0.0.1:{port}",
        worker_enabled=False,
        scheduler_enabled=False,
    )
    with ServedApp(create_app(settings), port) as served:
        origin = served.base_url
        async with httpx.AsyncClient(base_url=origin) as client:
            favicon = await client.get("/favicon.svg")
        assert favicon.status_code == 200
        assert favicon.headers["content-type"].startswith("image/svg+xml")
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page, blocked, errors = await offline_page(browser, origin)
                await page.goto(f"{origin}/docs")
                await page.locator(".opblock").first.wait_for()
                assert await page.title() == "pbx-entra - Swagger UI"
                icon = await page.get_attribute("link[rel='shortcut icon']", "href")
                assert icon == "/favicon.svg"
                assert await page.locator(".opblock").count() == len(operations)
                rendered = {
                    (m.strip().lower(), p.strip().replace("\u200b", ""))
                    for m, p in zip(
                        await page.locator(".opblock .opblock-summary-method").all_inner_texts(),
                        await page.locator(".opblock .opblock-summary-path").all_inner_texts(),
                        strict=True,
                    )
                }
                assert rendered == set(operations)
                # What a person sees, offline (kept with the test's files: docs.png).
                shot = await page.screenshot(path=str(tmp_path / "docs.png"))
                assert len(shot) > 20_000  # a rendered page, not a blank one

                # Without a key the API answers 401; with the PBX key, 200.
                block = await try_it_out(
                    page, "integration", "get_integration_api_v1_integration_get"
                )
                status, url, body = await execute(page, block)
                assert (status, url) == ("401", f"{origin}/api/v1/integration")
                assert json.loads(body)["code"] == "unauthorized"
                await authorize(page, "PbxApiKey", pbx_key)
                status, url, body = await execute(page, block)
                assert (status, url) == ("200", f"{origin}/api/v1/integration")
                assert json.loads(body)["status"] == "not_configured"

                # The operator key works the same way on the operator routes.
                block = await try_it_out(page, "operator", "list_pbxes_api_v1_pbxes_get")
                status, _, body = await execute(page, block)
                assert status == "401"
                await authorize(page, "AdminApiKey", ADMIN_KEY)
                status, _, body = await execute(page, block)
                assert status == "200"
                assert pbx["id"] in {p["id"] for p in json.loads(body)["items"]}

                # The OAuth2 redirect page is the service's too.
                redirect = await page.context.request.get(f"{origin}/docs/oauth2-redirect")
                assert redirect.status == 200 and "swaggerUIRedirectOauth2" in await redirect.text()

                await page.goto(f"{origin}/redoc")
                await page.locator("[data-section-id*='/operation/'] h2").first.wait_for()
                assert await page.title() == "pbx-entra - ReDoc"
                menu = page.locator("li[data-item-id*='/operation/']")
                assert await menu.count() == len(operations)
                sections = page.locator("[data-section-id*='/operation/']")
                assert await sections.count() == len(operations)
                heading = page.locator(
                    "[data-section-id='tag/integration/operation/"
                    "get_integration_api_v1_integration_get'] h2"
                )
                assert (await heading.inner_text()).strip() == "Get Integration"
                # Nothing was fetched from outside; the policy stopped ReDoc's CDN logo in the
                # browser; the only other errors are the two 401 answers asked for above.
                assert blocked == []
                unauthorized = "the server responded with a status of 401"
                assert sum(unauthorized in e for e in errors) == 2
                refused = [e for e in errors if unauthorized not in e]
                assert len(refused) == 1 and "Content Security Policy" in refused[0]
                assert "cdn.redoc.ly" in refused[0]
            finally:
                await browser.close()
