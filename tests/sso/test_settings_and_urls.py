"""The SSO section's allowed return URLs: validated on PUT, matched safely on sign-in."""

from __future__ import annotations

import pytest

from app import return_urls as urls
from tests.cloud import Cloud
from tests.conftest import Api
from tests.sync.helpers import scenario

ALLOWED = [
    "https://pbx.example.com/linkus/",
    "https://pbx.example.com:8443/web",
    "http://127.0.0.1:5173/",
    "http://localhost/app/",
    "http://[::1]:8080/",
    "linkus://sso",
    "com.yeastar.linkus:/oauth2redirect",
]
REFUSED = [
    "pbx.example.com/linkus/",
    "/linkus/",
    "//pbx.example.com/",
    "http://pbx.example.com/linkus/",
    "http://10.0.0.5/linkus/",
    "https:///nohost",
    "https://user:pw@pbx.example.com/",
    "https://pbx.example.com/linkus/?a=1",
    "https://pbx.example.com/linkus/#x",
    "https://pbx.example.com/a/../b/",
    "https://pbx.example.com:99999/",
    "https://pbx example.com/",
    "https://pbx.example.com\\evil/",
    "javascript:alert(1)",
    "data:text/html,hi",
    "file:///etc/passwd",
    "linkus://",
    "",
]


@pytest.mark.parametrize("url", ALLOWED)
def test_allowed_urls_pass(url: str) -> None:
    assert urls.check_allowed(url) == url


@pytest.mark.parametrize("url", REFUSED)
def test_refused_urls_say_why(url: str) -> None:
    with pytest.raises(ValueError):
        urls.check_allowed(url)


@pytest.mark.parametrize(
    ("return_url", "ok"),
    [
        ("https://pbx.example.com/linkus/", True),
        ("https://pbx.example.com/linkus/web/index.html?x=1#/a", True),
        ("HTTPS://PBX.EXAMPLE.COM:443/linkus/", True),
        ("https://pbx.example.com/linkus", False),
        ("https://pbx.example.com/linkusx/", False),
        ("https://pbx.example.com.evil.net/linkus/", False),
        ("https://evil.net/https://pbx.example.com/linkus/", False),
        ("https://user@pbx.example.com/linkus/", False),
        ("https://pbx.example.com@evil.net/linkus/", False),
        ("https://pbx.example.com:444/linkus/", False),
        ("http://pbx.example.com/linkus/", False),
        ("https://pbx.example.com/linkus/%2E%2E/admin", False),
        ("https://pbx.example.com/linkus/\\..\\admin", False),
        ("https://pbx.example.com/linkus/\t", False),
        ("https://pbx.example.com:8443/web", True),
        ("https://pbx.example.com:8443/web/app", True),
        ("https://pbx.example.com:8443/webapp", False),
        ("linkus://sso", True),
        ("linkus://sso/done?x=1", True),
        ("linkus://ssox", False),
        ("linkus://evil/sso", False),
        ("http://127.0.0.1:5173/anything", True),
        ("http://127.0.0.1:5174/anything", False),
        ("http://[::1]:8080/x", True),
        ("com.yeastar.linkus:/oauth2redirect", True),
        ("com.yeastar.linkus:/oauth2redirectx", False),
        ("com.yeastar.linkus.evil:/oauth2redirect", False),
    ],
)
def test_return_url_matching(return_url: str, ok: bool) -> None:
    assert urls.matches(return_url, ALLOWED) is ok


def test_codes_are_added_to_the_query_before_the_fragment() -> None:
    assert urls.with_params("linkus://sso", sso_code="c") == "linkus://sso?sso_code=c"
    assert (
        urls.with_params("https://h/p/?a=1#/x", sso_error="sso_disabled")
        == "https://h/p/?a=1&sso_error=sso_disabled#/x"
    )


async def test_put_sso_validates_each_url(sync_api: Api, cloud: Cloud) -> None:
    s = await scenario(sync_api, cloud)
    for bad in REFUSED:
        resp = await sync_api.client.put(
            "/api/v1/integration/sso",
            json={"enabled": True, "allowed_return_urls": [ALLOWED[0], bad]},
            headers=s.h,
        )
        assert resp.status_code == 422, bad
        assert resp.json()["code"] == "validation_error"
        assert resp.json()["errors"][0]["loc"][-1] == "allowed_return_urls"
        assert "[1]" in resp.json()["errors"][0]["msg"], resp.json()
    section = await sync_api.client.get("/api/v1/integration/sso", headers=s.h)
    assert section.json()["state"] == "off" and section.json()["allowed_return_urls"] == []
    body = {"enabled": True, "allowed_return_urls": [*ALLOWED, ALLOWED[0]]}
    saved = await s.put_rules("sso", body)
    assert saved["allowed_return_urls"] == ALLOWED and saved["state"] == "active"
    off = await s.put_rules("sso", {"enabled": False, "allowed_return_urls": ALLOWED})
    assert off["state"] == "off"
    view = (await sync_api.client.get("/api/v1/integration", headers=s.h)).json()
    assert view["sso"]["allowed_return_urls"] == ALLOWED and view["sso"]["state"] == "off"
    assert view["sso_redirect_uri"] == "http://127.0.0.1:8000/sso/callback"
