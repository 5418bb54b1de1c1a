"""Shared fixtures: the same tests run against SQLite and PostgreSQL, real databases both."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import hypothesis
import pytest
from sqlalchemy.engine import make_url

from app import migrate
from app.clock import FakeClock
from app.config import Settings
from app.main import configure, create_app
from app.models import Base
from tests.untraced import sqlite_threads_untraced, traced_executor, untraced

ADMIN_KEY = "test-operator-key-0123456789"
SECRET_KEY = "test-secret-key-for-encryption-at-rest"
PG_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)

# Under CI the property tests draw the same examples every run, so a red build names a change,
# not a draw; elsewhere they explore (and keep what failed in .hypothesis/ to replay first). The
# long explorations are in bench/ (EXPLAIN_EXAMPLES, CONVERGENCE_EXAMPLES).
hypothesis.settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI") == "true":
    hypothesis.settings.load_profile("ci")


def pytest_configure(config: pytest.Config) -> None:
    """A test process holds a large heap for its whole run (the imported modules, the apps kept
    for reuse, SQLAlchemy's compiled statements): with CPython's default thresholds it scanned all
    of it every second or so, about an eighth of the suite's CPU. Young objects are collected as
    before, less often; the old generation only after far more survivors."""
    gc.set_threshold(2000, 20, 100)


def pytest_collection_finish(session: pytest.Session) -> None:
    """What collection built lives until the process ends: no later collection need scan it."""
    gc.collect()
    gc.freeze()


def _plain(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throw-away PostgreSQL database for this test run, dropped at the end."""
    name = f"pbx_entra_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(_plain(PG_ADMIN_URL))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    # A throw-away database: commits need not wait for the disk.
    asyncio.run(admin(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated database of each kind (migrations run for real, once per kind)."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session", autouse=True)
def _sqlite_threads_untraced() -> None:
    sqlite_threads_untraced()


@pytest.fixture(scope="session", autouse=True)
async def _executor_threads_traced() -> AsyncIterator[None]:
    pool = traced_executor()
    if pool is not None:
        asyncio.get_running_loop().set_default_executor(pool)
    yield


@pytest.fixture(autouse=True)
def _coverage_measures_the_sqlite_pass(request: pytest.FixtureRequest) -> Iterator[None]:
    """Coverage is measured on the SQLite pass and the tests that use no database; the PostgreSQL
    pass runs the same code untraced (tracing would double its CPU), so lines only PostgreSQL
    runs count as not covered."""
    callspec = getattr(request.node, "callspec", None)
    on_postgres = callspec is not None and callspec.params.get("database_url") == "postgresql"
    if not on_postgres or sys.gettrace() is None:
        yield
        return
    with untraced(threads=True):
        yield


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "secret_key": SECRET_KEY,
        "admin_api_key": ADMIN_KEY,
        "public_base_url": "http://127.0.0.1:8000",
        # Wall-clock fires have no place in tests that count runs; the timers have their own.
        "scheduler_enabled": False,
        # The presence tests drive their loop by hand: the background one need not poll for
        # notifications ten times a second in every app a test starts.
        "presence_notify_seconds": 1.0,
        **overrides,
    }
    return Settings(**values)


_RESTART_SEQUENCES = """
DO $$ DECLARE s record; BEGIN
  FOR s IN SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema() LOOP
    EXECUTE format('ALTER SEQUENCE %I RESTART', s.sequencename);
  END LOOP;
END $$;"""


async def _truncate(engine: Any) -> None:
    """Empty every table, children first, and restart the id sequences. (DELETE of a few rows is
    far cheaper than PostgreSQL's TRUNCATE, which replaces each table's files.)"""
    deletes = "".join(f"DELETE FROM {t.name};" for t in reversed(Base.metadata.sorted_tables))
    async with engine.begin() as conn:
        # One round trip: the deletes (and on PostgreSQL the sequences' restart) as one script.
        raw = (await conn.get_raw_connection()).driver_connection
        if conn.dialect.name == "postgresql":
            await raw.execute(deletes + _RESTART_SEQUENCES)
        else:
            await raw.executescript(deletes)


_CLEANING_ENGINES: dict[str, tuple[asyncio.AbstractEventLoop, Any]] = {}
_SESSION_LOOP: list[asyncio.AbstractEventLoop | None] = [None]


@pytest.fixture(scope="session", autouse=True)
async def _cleaning_engines_closed() -> AsyncIterator[None]:
    _SESSION_LOOP[0] = asyncio.get_running_loop()
    yield
    for _, engine in _CLEANING_ENGINES.values():
        await engine.dispose()


async def clean_database(database_url: str) -> None:
    """Empty the test database before a test: one engine per database on the tests' event loop,
    a passing one on another loop."""
    from app.db import create_engine

    loop = asyncio.get_running_loop()
    if database_url not in _CLEANING_ENGINES and loop is _SESSION_LOOP[0]:
        _CLEANING_ENGINES[database_url] = (loop, create_engine(database_url))
    kept = _CLEANING_ENGINES.get(database_url)
    if kept is not None and kept[0] is loop:
        await _truncate(kept[1])
        return
    engine = create_engine(database_url)
    try:
        await _truncate(engine)
    finally:
        await engine.dispose()


class Api:
    """A test client bound to one app, with helpers that go through the public API."""

    def __init__(self, client: httpx.AsyncClient, app: Any) -> None:
        self.client = client
        self.app = app
        self.operator = {"Authorization": f"Bearer {ADMIN_KEY}"}

    async def new_pbx(
        self, name: str | None = None, **fields: Any
    ) -> tuple[dict[str, Any], dict[str, str]]:
        body = {"name": name or f"pbx-{uuid.uuid4().hex[:8]}", **fields}
        resp = await self.client.post("/api/v1/pbxes", json=body, headers=self.operator)
        assert resp.status_code == 201, resp.text
        pbx = resp.json()
        return pbx, {"Authorization": f"Bearer {pbx['api_key']}"}


@pytest.fixture
def clock() -> FakeClock:
    """The test's clock: every app a test starts runs on it. Sleeps (Graph backoff, Retry-After)
    pass at once and move it ahead; `clock.advance(s)` moves it for everything waiting on it."""
    return FakeClock()


@pytest.fixture
async def app_factory(database_url: str, clock: FakeClock) -> AsyncIterator[Any]:
    """Start apps on the test database (lifespan included); all are shut down after the test."""
    stack: list[Any] = []

    async def start(**overrides: Any) -> Api:
        settings = make_settings(database_url, **overrides)
        app = _STOPPED_APPS.pop() if _STOPPED_APPS else create_app()
        configure(app, settings, clock=clock)
        ctx = app.router.lifespan_context(app)
        await ctx.__aenter__()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        stack.append((app, ctx, client))
        return Api(client, app)

    yield start
    for app, ctx, client in reversed(stack):
        await client.aclose()
        await ctx.__aexit__(None, None, None)
        _STOPPED_APPS.append(app)


# Apps stopped cleanly, to be configured and started again by a later test: an app builds its
# route table on its first request (about 80 ms, twice that traced), and is otherwise started
# anew by its lifespan.
_STOPPED_APPS: list[Any] = []


@pytest.fixture
async def api(app_factory: Any, database_url: str) -> Api:
    await clean_database(database_url)
    result: Api = await app_factory()
    return result


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The emulated Microsoft cloud (identity platform + Graph) over HTTPS, for the whole run."""
    from emulator.testing import run_emulator
    from tests.cloud import Cloud

    with run_emulator(tmp_path_factory.mktemp("cloud")) as running:
        c = Cloud(running)
        yield c
        c.control.close()


@pytest.fixture
async def cloud_api(app_factory: Any, database_url: str, cloud: Any) -> Api:
    """The service, on a clean database, wired to the emulated cloud."""
    await clean_database(database_url)
    result: Api = await app_factory(**cloud.settings())
    return result


@pytest.fixture
async def sync_api(app_factory: Any, database_url: str, cloud: Any) -> Api:
    """The service wired to the emulated cloud, with its worker driven by the test."""
    await clean_database(database_url)
    result: Api = await app_factory(worker_enabled=False, **cloud.settings())
    return result


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium. Missing: a skip with the reason on a workstation, a failure in CI."""
    if not Path(CHROMIUM).exists():
        message = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


class ServedApp:
    """The service on a real loopback port (uvicorn in a thread), for browsers and for Graph's
    notifications (over HTTPS when given a certificate and key)."""

    def __init__(self, app: Any, port: int, tls: tuple[str, str] | None = None) -> None:
        import threading

        import uvicorn

        self.base_url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_config=None,
            ssl_certfile=tls[0] if tls else None,
            ssl_keyfile=tls[1] if tls else None,
            # Graph's delivery client keeps its connections open: don't wait on them at the end.
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServedApp:
        import time

        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the service did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        # Connections still open (Graph's delivery client keeps its own) are not waited for; the
        # app's lifespan still ends as in production.
        self.server.force_exit = True
        self.server.should_exit = True
        self.thread.join(timeout=20)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def service_tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A private CA and a certificate for 127.0.0.1, to serve the service over HTTPS."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("service-tls")
    paths = {
        "ca": str(folder / "ca.pem"),
        "cert": str(folder / "cert.pem"),
        "key": str(folder / "key.pem"),
    }
    ca.cert_pem.write_to_path(paths["ca"])
    cert.cert_chain_pems[0].write_to_path(paths["cert"])
    cert.private_key_pem.write_to_path(paths["key"])
    return paths
