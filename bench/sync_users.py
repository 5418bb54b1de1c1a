"""User-sync benchmark against the emulator: full syncs of 10k and 100k users and a 100-change
delta run, into PostgreSQL and SQLite.

    .venv/bin/python bench/sync_users.py [--sizes 10000 100000] [--databases postgresql sqlite]

The emulator runs in its own process (as Graph does); the service runs here with its real code
paths: MSAL, the Graph client, the planner and the bulk apply. Printed per run: wall time per
phase, Graph requests, peak RSS, and two ratios measured in the same run:
  (a) our fetch phase / a bare httpx loop paging the same users from the same emulator;
  (b) our apply phase / a bare executemany insert of the same extension rows into the same database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import insert, select, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import migrate
from app.config import Settings
from app.db import create_engine, session_scope, sessionmaker
from app.directory.models import Extension
from app.integration.tokens import access_token
from app.main import create_app
from app.sync import repository as sync_repo
from app.sync.engine import RunExecutor
from app.sync.users_model import user_select

PG_ADMIN = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
KEY = "pbx_bench_key_000000000000000000000000000000"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def start_emulator(
    users: int, port: int, state: Path
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulator",
            "--port",
            str(port),
            "--state",
            str(state),
            "--demo",
            "--users",
            str(users),
            "--groups",
            "0",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    demo_file = state / "demo.json"
    for _ in range(600):
        if demo_file.exists():
            demo: dict[str, Any] = json.loads(demo_file.read_text())
            try:
                ctx = ssl.create_default_context(cafile=demo["ca_path"])
                if (
                    httpx.get(
                        f"{demo['base_url']}/_emulator/health", verify=ctx, timeout=2
                    ).status_code
                    == 200
                ):
                    return proc, demo
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("emulator did not start")


async def database(kind: str, workdir: Path) -> tuple[str, Any]:
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{workdir / f'bench-{uuid.uuid4().hex[:6]}.db'}"
        return url, None
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


async def bare_fetch(demo: dict[str, Any], token: str, select_: str) -> tuple[float, int]:
    ctx = ssl.create_default_context(cafile=demo["ca_path"])
    started = time.perf_counter()
    count = 0
    async with httpx.AsyncClient(verify=ctx, timeout=60, trust_env=False) as client:
        url: str | None = f"{demo['base_url']}/v1.0/users"
        params: dict[str, str] | None = {"$select": select_, "$top": "999"}
        while url:
            resp = await client.get(
                url, params=params, headers={"Authorization": f"Bearer {token}"}
            )
            body = json.loads(resp.content)
            count += len(body["value"])
            url, params = body.get("@odata.nextLink"), None
    return time.perf_counter() - started, count


async def bare_apply(url: str, pbx_id: str) -> float:
    """Insert the same extension rows again (into a copy of the table) with one executemany."""
    engine = create_engine(url)
    maker = sessionmaker(engine)
    async with session_scope(maker) as session:
        rows = [
            dict(r._mapping)
            for r in (
                await session.execute(select(Extension.__table__).where(Extension.pbx_id == pbx_id))
            )
        ]
        if engine.dialect.name == "postgresql":
            await session.execute(text("CREATE TABLE bench_ext (LIKE extensions INCLUDING ALL)"))
        else:
            await session.execute(
                text("CREATE TABLE bench_ext AS SELECT * FROM extensions WHERE 0")
            )
    from sqlalchemy import Table

    table = Table(
        "bench_ext",
        Extension.__table__.metadata.__class__(),
        *[c._copy() for c in Extension.__table__.columns],
    )
    started = time.perf_counter()
    async with session_scope(maker) as session:
        for i in range(0, len(rows), 1000):
            await session.execute(insert(table), rows[i : i + 1000])
    elapsed = time.perf_counter() - started
    async with session_scope(maker) as session:
        await session.execute(text("DROP TABLE bench_ext"))
    await engine.dispose()
    return elapsed


async def one(
    kind: str, size: int, demo: dict[str, Any], workdir: Path, results: list[dict[str, Any]]
) -> None:
    url, drop = await database(kind, workdir)
    await asyncio.to_thread(migrate.upgrade, url)
    settings = Settings(
        database_url=url,
        secret_key="bench-secret",
        admin_api_key="bench-admin",
        pbx_api_key=KEY,
        login_base_url=demo["base_url"],
        graph_base_url=f"{demo['base_url']}/v1.0",
        ca_bundle=demo["ca_path"],
        worker_enabled=False,
        log_level="WARNING",
    )
    app = create_app(settings)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    try:
        h = {"Authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench", timeout=600
        ) as api:
            pbx = (await api.get("/api/v1/pbx", headers=h)).json()
            await api.patch(
                f"/api/v1/pbxes/{pbx['id']}",
                json={"max_extensions": 100_000},
                headers={"Authorization": "Bearer bench-admin"},
            )
            put = (
                await api.put(
                    "/api/v1/integration",
                    json={k: demo[k] for k in ("client_id", "tenant_id", "client_secret")},
                    headers=h,
                )
            ).json()
            ctx = ssl.create_default_context(cafile=demo["ca_path"])
            page = httpx.get(put["authorization_url"], verify=ctx).text
            import html as html_mod
            import re

            fields = dict(re.findall(r"name='([^']+)' value='([^']*)'", page))
            fields = {k: html_mod.unescape(v) for k, v in fields.items()}
            assert (await api.post("/integration/callback", data=fields)).status_code == 200
            saved = (
                await api.put(
                    "/api/v1/integration/user-sync",
                    json={"enabled": True, "range": {"mode": "all"}},
                    headers=h,
                )
            ).json()
            runtime = app.state.runtime

            async def execute() -> tuple[RunExecutor, float]:
                async with session_scope(runtime.sessionmaker) as session:
                    run = await sync_repo.claim_next(
                        session, "bench", __import__("datetime").timedelta(minutes=30)
                    )
                assert run is not None
                ex = RunExecutor(runtime, run)
                t0 = time.perf_counter()
                status = await ex.execute()
                assert status in ("succeeded", "partial"), status
                return ex, time.perf_counter() - t0

            full, full_wall = await execute()
            rss = peak_rss_mb()
            token = await access_token(runtime, pbx["id"])
            bare_f, n = await bare_fetch(demo, token, user_select("auto", "businessPhones"))
            bare_a = await bare_apply(url, pbx["id"])
            created = (
                await api.get(f"/api/v1/sync-runs/{saved['initial_run_id']}", headers=h)
            ).json()["users"]["created"]
            result = {
                "db": kind,
                "users": size,
                "created": created,
                "wall_s": round(full_wall, 2),
                "fetch_s": round(full.timings["fetch"], 2),
                "plan_s": round(full.timings["plan"], 2),
                "apply_s": round(full.timings["apply"], 2),
                "graph_requests": full.graph.stats.requests,
                "peak_rss_mb": round(rss),
                "bare_fetch_s": round(bare_f, 2),
                "ratio_fetch": round(full.timings["fetch"] / bare_f, 2),
                "bare_apply_s": round(bare_a, 2),
                "ratio_apply": round(full.timings["apply"] / bare_a, 2),
            }
            assert n == size + 1 or n >= size
            if size >= 100_000:
                # 100 changes among the users, then an incremental run.
                ctl = httpx.Client(base_url=f"{demo['base_url']}/_emulator", verify=ctx, timeout=60)
                users = ctl.get(f"/tenants/{demo['tenant_id']}/users", params={"top": 100}).json()
                ids = [u["id"] for u in (users["value"] if isinstance(users, dict) else users)][
                    :100
                ]
                for uid in ids:
                    ctl.patch(
                        f"/tenants/{demo['tenant_id']}/users/{uid}",
                        json={"jobTitle": f"Bench {uuid.uuid4().hex[:6]}"},
                    ).raise_for_status()
                await api.post("/api/v1/integration/sync", json={}, headers=h)
                delta, delta_wall = await execute()
                result.update(
                    delta_changes=len(ids),
                    delta_wall_s=round(delta_wall, 3),
                    delta_graph_requests=delta.graph.stats.requests,
                    delta_updated=delta.report.counts["users"]["updated"],
                )
            results.append(result)
            print(json.dumps(result), flush=True)
    finally:
        await lifespan.__aexit__(None, None, None)
        if drop:
            await drop()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000])
    parser.add_argument("--databases", nargs="+", default=["postgresql", "sqlite"])
    parser.add_argument("--port", type=int, default=18443)
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    for size in args.sizes:
        workdir = Path(tempfile.mkdtemp(prefix="pbx-entra-bench-"))
        proc, demo = start_emulator(size, args.port, workdir / "emulator")
        try:
            for kind in args.databases:
                await one(kind, size, demo, workdir, results)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
