"""What the benchmarks share: a throw-away database, the service connected to the emulator's
demo tenant through its public API, and running the next queued run here, timed."""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import migrate
from app.config import Settings
from app.db import session_scope
from app.demo import consent_fields, start_emulator
from app.main import create_app
from app.runs import repository as runs_repo
from app.sync.executor import RunExecutor

PG_ADMIN = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
KEY = "pbx_bench_key_000000000000000000000000000000"
ADMIN = "bench-admin"

__all__ = ["ROOT", "Service", "database", "peak_rss_mb", "service", "start_emulator"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def database(kind: str, workdir: Path) -> tuple[str, Callable[[], Awaitable[None]] | None]:
    """A new database of that kind, and how to drop it (PostgreSQL)."""
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{workdir / f'bench-{uuid.uuid4().hex[:6]}.db'}", None
    name = f"pbx_entra_bench_{uuid.uuid4().hex[:8]}"
    plain = make_url(PG_ADMIN).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(plain)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()

    async def drop() -> None:
        c = await asyncpg.connect(plain)
        await c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await c.close()

    return make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False), drop


@dataclass
class Service:
    api: httpx.AsyncClient
    app: Any
    pbx: dict[str, Any]
    headers: dict[str, str]

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime

    async def execute_next(self) -> tuple[RunExecutor, float]:
        """Claim the next queued run and execute it here: (executor, wall seconds)."""
        async with session_scope(self.runtime.sessionmaker) as session:
            run = await runs_repo.claim_next(session, "bench", timedelta(minutes=30))
        assert run is not None
        executor = RunExecutor(self.runtime, run)
        started = time.perf_counter()
        status = await executor.execute()
        assert status in ("succeeded", "partial"), status
        return executor, time.perf_counter() - started


@asynccontextmanager
async def service(
    kind: str, demo: dict[str, Any], workdir: Path, **limits: int
) -> AsyncIterator[Service]:
    """The service on a new database, its `default` PBX connected to the demo tenant."""
    url, drop = await database(kind, workdir)
    await asyncio.to_thread(migrate.upgrade, url)
    settings = Settings(
        database_url=url,
        secret_key="bench-secret",
        admin_api_key=ADMIN,
        pbx_api_key=KEY,
        login_base_url=demo["base_url"],
        graph_base_url=f"{demo['base_url']}/v1.0",
        ca_bundle=demo["ca_path"],
        worker_enabled=False,
        scheduler_enabled=False,
        log_level="WARNING",
    )
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://bench", timeout=600
            ) as api:
                h = {"Authorization": f"Bearer {KEY}"}
                pbx = (await api.get("/api/v1/pbx", headers=h)).json()
                if limits:
                    await api.patch(
                        f"/api/v1/pbxes/{pbx['id']}",
                        json=limits,
                        headers={"Authorization": f"Bearer {ADMIN}"},
                    )
                body = {k: demo[k] for k in ("client_id", "tenant_id", "client_secret")}
                put = (await api.put("/api/v1/integration", json=body, headers=h)).json()
                fields = await consent_fields(put["authorization_url"], demo["ca_path"])
                assert (await api.post("/integration/callback", data=fields)).status_code == 200
                yield Service(api, app, pbx, h)
    finally:
        if drop:
            await drop()
