"""The committed OpenAPI document, and the CLI's start-up errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from app import migrate
from app.cli import cli
from app.config import Settings
from app.main import create_app
from tests.cli import Ran


def test_committed_openapi_matches_the_app(repo_root: Path) -> None:
    committed = json.loads((repo_root / "openapi" / "openapi.json").read_text())
    assert committed == create_app(Settings(demo=True)).openapi(), (
        "openapi/openapi.json is stale: run `pbx-entra openapi > openapi/openapi.json`"
    )


def test_openapi_command_prints_the_document() -> None:
    result = CliRunner().invoke(cli, ["openapi"])
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert "/api/v1/extensions" in doc["paths"] and doc["info"]["title"] == "pbx-entra"


def _run(env: dict[str, str], *args: str) -> Ran:
    """The command run in this process, with only `env` of the service's settings set."""
    unset: dict[str, str | None] = dict.fromkeys(("DATABASE_URL", "SECRET_KEY", "DEMO"))
    result = CliRunner().invoke(cli, list(args), env={**unset, **env})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Ran(result.exit_code, result.stdout, result.stderr)


def test_missing_secret_key_is_one_clear_line() -> None:
    result = _run({}, "migrate")
    assert result.returncode == 2
    assert "SECRET_KEY is required" in result.stderr and "Traceback" not in result.stderr


def test_malformed_database_url_is_one_clear_line() -> None:
    result = _run({"SECRET_KEY": "k", "DATABASE_URL": "mysql://x"}, "migrate")
    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr and "not supported" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_database_is_one_clear_line() -> None:
    result = _run(
        {"SECRET_KEY": "k", "DATABASE_URL": "postgresql+asyncpg://u:pw@127.0.0.1:1/db"}, "serve"
    )
    assert result.returncode == 2
    assert "database unreachable" in result.stderr and "Traceback" not in result.stderr
    assert ":pw@" not in result.stderr


def test_migrate_command_brings_a_new_database_to_head(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/new.db"
    result = _run({"SECRET_KEY": "k", "DATABASE_URL": url}, "migrate")
    assert result.returncode == 0, result.stderr
    assert f"database at migration {migrate.head_revision()}" in result.stderr
    import sqlite3

    tables = {
        r[0] for r in sqlite3.connect(tmp_path / "new.db").execute("select name from sqlite_master")
    }
    assert {"pbxes", "extensions", "sync_runs", "integrations", "graph_subscriptions"} <= tables


def test_replicas_migrating_at_once_do_not_collide(postgres_url: str) -> None:
    """Two `pbx-entra migrate` at the same moment on a new PostgreSQL database: both succeed."""
    import asyncio
    import uuid

    import asyncpg
    from sqlalchemy.engine import make_url

    name = f"pbx_entra_migrate_{uuid.uuid4().hex[:8]}"
    admin = (
        make_url(postgres_url)
        .set(drivername="postgresql", database="postgres")
        .render_as_string(hide_password=False)
    )

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
        clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SECRET_KEY"}}
        env = {**clean, "SECRET_KEY": "k", "DATABASE_URL": url}
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "app", "migrate"], env=env, stderr=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
        assert [code for code, _ in results] == [0, 0], results
        assert all(f"database at migration {migrate.head_revision()}" in err for _, err in results)
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
