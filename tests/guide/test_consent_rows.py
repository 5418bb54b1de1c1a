"""The consent and its aftermath as the guide states them: the answer posted back (never in a URL),
the 10-minute sign-in link, the callback's exact text, revoked consent, the picker's 200 groups."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from tests.cloud import Cloud, configure, connect
from tests.conftest import Api

GUIDE_TEXT = (
    "Data initialization succeeded. "
    "You can configure synchronization rules and enjoy advanced features now."
)


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}


async def test_consent_answer_is_form_posted_so_the_code_never_sits_in_a_url(
    cloud_api: Api, cloud: Cloud
) -> None:
    tenant = cloud.tenant(users=0, groups=0, seed=1)
    _, h = await cloud_api.new_pbx()
    url = (await configure(cloud_api, tenant, h)).json()["authorization_url"]
    assert _query(url)["response_mode"] == "form_post"
    # Microsoft answers with a page that posts the code to the Redirect URI: no redirect.
    answer = httpx.get(url, verify=cloud.emulator.ssl_context, follow_redirects=False)
    assert answer.status_code == 200 and "location" not in answer.headers
    action = re.search(r"<form method='POST' action='([^']+)'", answer.text)
    assert action and html.unescape(action.group(1)) == (
        "http://127.0.0.1:8000/integration/callback"
    )
    fields = cloud.follow_authorize(url)
    assert fields["code"] and fields["state"]
    assert fields["code"] not in html.unescape(action.group(1))
    done = await cloud_api.client.post("/integration/callback", data=fields)
    assert done.status_code == 200
    body = (await cloud_api.client.get("/api/v1/integration", headers=h)).json()
    assert body["status"] == "connected"


async def test_sign_in_link_expires_after_ten_minutes(
    cloud_api: Api, cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = cloud.tenant(users=0, groups=0, seed=1)
    _, h = await cloud_api.new_pbx()
    clock = cloud_api.app.state.runtime.clock  # the test's FakeClock

    url = (await configure(cloud_api, tenant, h)).json()["authorization_url"]
    late = cloud.follow_authorize(url)
    clock.advance(timedelta(minutes=10, seconds=5).total_seconds())
    expired = await cloud_api.client.post("/integration/callback", data=late)
    assert expired.status_code == 400 and "expired" in expired.text
    body = (await cloud_api.client.get("/api/v1/integration", headers=h)).json()
    assert body["status"] == "awaiting_consent"

    url = (await cloud_api.client.post("/api/v1/integration/reauthorize", headers=h)).json()[
        "authorization_url"
    ]
    in_time = cloud.follow_authorize(url)
    clock.advance(timedelta(minutes=9, seconds=50).total_seconds())
    ok = await cloud_api.client.post("/integration/callback", data=in_time)
    assert ok.status_code == 200
    body = (await cloud_api.client.get("/api/v1/integration", headers=h)).json()
    assert body["status"] == "connected"


async def test_callback_page_says_the_guide_text(cloud_api: Api, cloud: Cloud) -> None:
    tenant = cloud.tenant(users=3, groups=1)
    _, h = await cloud_api.new_pbx()
    url = (await configure(cloud_api, tenant, h)).json()["authorization_url"]
    page = await cloud_api.client.post("/integration/callback", data=cloud.follow_authorize(url))
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    heading = re.search(r"<h1[^>]*>([^<]*)</h1>", page.text)
    message = re.search(r"<p id=\"message\">([^<]*)</p>", page.text)
    assert heading and html.unescape(heading.group(1)) == "Data initialization succeeded"
    assert message and html.unescape(message.group(1)) == GUIDE_TEXT


async def test_revoked_consent_sets_error_until_consented_again(
    cloud_api: Api, cloud: Cloud
) -> None:
    tenant = cloud.tenant(users=3, groups=1)
    # Short-lived access tokens, so the next call refreshes.
    cloud.configure(tenant, access_token_lifetime=60)
    _, h = await cloud_api.new_pbx()
    await connect(cloud_api, cloud, tenant, h)
    cloud.control.post(
        f"/tenants/{tenant.tenant_id}/apps/{tenant.client_id}/revoke-consent"
    ).raise_for_status()
    cloud_api.app.state.runtime.tokens.clear()
    resp = await cloud_api.client.get("/api/v1/integration/directory/groups", headers=h)
    assert resp.status_code == 409 and resp.json()["code"] == "integration_error"
    assert resp.json()["aadsts"] == "AADSTS65001"
    body = (await cloud_api.client.get("/api/v1/integration", headers=h)).json()
    assert body["status"] == "error" and body["last_error"]["code"] == "AADSTS65001"
    # A new consent (the admin consents again) brings it back.
    url = (await cloud_api.client.post("/api/v1/integration/reauthorize", headers=h)).json()[
        "authorization_url"
    ]
    assert (
        await cloud_api.client.post("/integration/callback", data=cloud.follow_authorize(url))
    ).status_code == 200
    body = (await cloud_api.client.get("/api/v1/integration", headers=h)).json()
    assert body["status"] == "connected" and body["last_error"] is None
    again = await cloud_api.client.get("/api/v1/integration/directory/groups", headers=h)
    assert again.status_code == 200


async def test_group_picker_shows_200_groups_by_default(cloud_api: Api, cloud: Cloud) -> None:
    tenant = cloud.tenant(users=3, groups=205)
    _, h = await cloud_api.new_pbx()
    await connect(cloud_api, cloud, tenant, h)
    listed = cloud.control.get(f"/tenants/{tenant.tenant_id}/groups").json()
    all_ids = {g["id"] for g in (listed["value"] if isinstance(listed, dict) else listed)}
    assert len(all_ids) == 205
    cloud.clear_requests()
    first = (await cloud_api.client.get("/api/v1/integration/directory/groups", headers=h)).json()
    assert len(first["items"]) == 200 and first["next_cursor"]
    reads = [r for r in cloud.requests("/v1.0/groups") if r["method"] == "GET"]
    assert [_query(f"?{r['query']}").get("$top") for r in reads] == ["200"]
    rest: dict[str, Any] = (
        await cloud_api.client.get(
            "/api/v1/integration/directory/groups",
            params={"cursor": first["next_cursor"]},
            headers=h,
        )
    ).json()
    assert len(rest["items"]) == 5 and rest["next_cursor"] is None
    assert {g["id"] for g in first["items"] + rest["items"]} == all_ids
