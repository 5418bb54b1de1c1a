"""Health, readiness, metrics, request ids, JSON logs without secrets, problem documents."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from app import migrate
from app.clock import FakeClock
from app.config import Settings
from app.logs import JsonFormatter, redact
from app.main import configure, create_app
from tests.conftest import SECRET_KEY, Api


async def test_healthz(api: Api) -> None:
    resp = await api.client.get("/healthz")
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}


async def test_readyz_ok_at_head(api: Api) -> None:
    resp = await api.client.get("/readyz")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ok" and body["migration"] == body["head"] == migrate.head_revision()


async def _started(settings: Settings) -> tuple[Any, httpx.AsyncClient]:
    app = create_app(settings)
    ctx = app.router.lifespan_context(app)
    await ctx.__aenter__()
    return ctx, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_readyz_unavailable_without_migrations(tmp_path: Path) -> None:
    ctx, client = await _started(
        Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/empty.db", secret_key=SECRET_KEY)
    )
    try:
        resp = await client.get("/readyz")
        assert resp.status_code == 503
        assert resp.json()["migration"] is None and resp.json()["database"] == "ok"
    finally:
        await client.aclose()
        await ctx.__aexit__(None, None, None)


async def test_readyz_unavailable_when_database_unreachable() -> None:
    ctx, client = await _started(
        Settings(
            database_url="postgresql+asyncpg://postgres@127.0.0.1:1/none", secret_key=SECRET_KEY
        )
    )
    try:
        resp = await client.get("/readyz")
        assert resp.status_code == 503 and resp.json()["database"] == "unreachable"
    finally:
        await client.aclose()
        await ctx.__aexit__(None, None, None)


async def test_a_stopped_app_configured_again_starts_anew(
    tmp_path: Path, database_url: str
) -> None:
    """An app is started again with what it was configured with last, keeping nothing of its
    earlier run but its route table."""
    migrated = database_url
    app = create_app(
        Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/empty.db", secret_key=SECRET_KEY)
    )
    for url, status in ((f"sqlite+aiosqlite:///{tmp_path}/empty.db", 503), (migrated, 200)):
        clock = FakeClock()
        configure(app, Settings(database_url=url, secret_key=SECRET_KEY), clock=clock)
        ctx = app.router.lifespan_context(app)
        await ctx.__aenter__()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
        try:
            assert app.state.settings.database_url == url
            assert app.state.runtime.clock is clock
            assert app.state.sso_signing_keys is None
            assert (await client.get("/readyz")).status_code == status
            app.state.sso_signing_keys = "made during this run"
        finally:
            await client.aclose()
            await ctx.__aexit__(None, None, None)


async def test_metrics_count_requests_by_route_template(api: Api) -> None:
    _, h = await api.new_pbx()
    ext = (
        await api.client.post(
            "/api/v1/extensions", json={"number": "1", "first_name": "a"}, headers=h
        )
    ).json()
    await api.client.get(f"/api/v1/extensions/{ext['id']}", headers=h)
    text = (await api.client.get("/metrics")).text
    assert (
        'pbx_entra_http_requests_total{method="GET",route="/api/v1/extensions/{ext_id}",status="200"}'
        in text
    )
    assert (
        'pbx_entra_http_request_duration_seconds_bucket{le="0.005",method="POST",route="/api/v1/extensions"}'
        in text
    )
    for counter in (
        "pbx_entra_sync_runs_total",
        "pbx_entra_graph_requests_total",
        "pbx_entra_notifications_received_total",
    ):
        assert f"# TYPE {counter} counter" in text
    # The id of one extension never becomes a label.
    assert ext["id"] not in text


async def test_request_id_is_echoed_or_made(api: Api) -> None:
    given = await api.client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = await api.client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert (
        made.headers["x-request-id"] != "bad id with spaces"
        and len(made.headers["x-request-id"]) == 32
    )


async def test_unknown_route_and_method_are_problems(api: Api) -> None:
    missing = await api.client.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["code"] == "not_found"
    wrong = await api.client.put("/healthz")
    assert wrong.status_code == 405 and wrong.json()["code"] == "method_not_allowed"


async def test_access_log_is_json_with_request_id_and_no_secrets(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    _, h = await api.new_pbx()
    key = h["Authorization"].removeprefix("Bearer ")
    formatter = JsonFormatter()
    with caplog.at_level(logging.INFO):
        await api.client.get(
            "/api/v1/pbx?code=SECRETCODE123&state=S1", headers={**h, "X-Request-ID": "rid-1"}
        )
    lines = [formatter.format(r) for r in caplog.records if r.name == "pbx_entra.access"]
    assert lines, "no access log line"
    entry = json.loads(lines[-1])
    assert (
        entry["request_id"] == "rid-1"
        and entry["status"] == 200
        and entry["route"] == "/api/v1/pbx"
    )
    joined = "\n".join(lines)
    assert "SECRETCODE123" not in joined and key not in joined


@pytest.mark.parametrize(
    "raw, leaked",
    [
        ("Authorization: Bearer eyJhbGciOi.eyJzdWIiOi.sig", "eyJhbGciOi"),
        ("client_secret=abc~DEF123&grant_type=x", "abc~DEF123"),
        ('{"refresh_token": "0.AAAA-refresh"}', "0.AAAA-refresh"),
        ("key pbx_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345", "pbx_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"),
        ("token eyJ0eXAiOiJKV1Qi.eyJhdWQiOiIw.abc", "eyJ0eXAiOiJKV1Qi"),
        ("password: hunter2", "hunter2"),
    ],
)
def test_redaction_removes_secret_shapes(raw: str, leaked: str) -> None:
    assert leaked not in redact(raw)
    assert "[redacted]" in redact(raw)


def test_exception_tracebacks_are_redacted() -> None:
    try:
        raise RuntimeError("refused client_secret=TopSecretValue1")
    except RuntimeError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    out = json.loads(JsonFormatter().format(record))
    assert "TopSecretValue1" not in out["exc"] and "RuntimeError" in out["exc"]


async def test_unexpected_errors_are_500_problems_without_details(api: Api) -> None:
    @api.app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("internal detail client_secret=XYZ")

    transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        resp = await client.get("/boom")
    assert resp.status_code == 500
    assert resp.json()["code"] == "internal_error" and "XYZ" not in resp.text
