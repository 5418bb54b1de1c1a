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
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import insert
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import migrate
from app.config import Settings
from app.db import session_scope, utcnow
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


async def ratio_rounds(
    runtime: Any, pbx_id: str, run_id: str, demo: dict[str, Any], token: str, rounds: int = 3
) -> dict[str, float]:
    """(a) and (b), each the ratio of medians over interleaved rounds (the machine is shared)."""
    from app.integration.tokens import graph_for
    from app.sync.apply_users import apply_users
    from app.sync.fetch_users import fetch_users
    from app.sync.plan_users import UserRules, plan_users

    rules = UserRules(range_mode="all")
    select_ = user_select("auto", "businessPhones")
    ours_f, bare_f, ours_a, bare_a = [], [], [], []
    fetched = None
    for _ in range(rounds):
        t = time.perf_counter()
        fetched = await fetch_users(
            graph_for(runtime, pbx_id),
            rules,
            delta_link=None,
            full=True,
            retry_ids=set(),
            managed_ids=set(),
        )
        ours_f.append(time.perf_counter() - t)
        bare_f.append((await bare_fetch(demo, token, select_))[0])
    assert fetched is not None
    # A PBX with no extensions yet: the plan creates every user, as a first run does.
    async with session_scope(runtime.sessionmaker) as session:
        from app.tenants.models import Pbx

        empty = Pbx(
            name=f"bench-{uuid.uuid4().hex[:6]}",
            timezone="UTC",
            max_extensions=200_000,
            max_extension_groups=63,
        )
        session.add(empty)
    plan = plan_users(fetched.input, [], rules, 200_000)
    now = utcnow()
    rows_for_bare = [
        {
            "id": str(uuid.uuid4()),
            "pbx_id": empty.id,
            "number": c.number,
            "first_name": c.first_name,
            "last_name": c.last_name,
            "email": c.email,
            "email_key": c.email.lower() if c.email else None,
            "mobile": c.mobile,
            "job_title": c.job_title,
            "managed_by": "entra",
            "entra_id": c.entra_id,
            "former_entra_id": None,
            "welcome_email_status": None,
            "welcome_email_at": None,
            "created_at": now,
            "updated_at": now,
        }
        for c in plan.creates
    ]
    from app.db import table_of

    for _ in range(rounds):
        # Both inside a transaction that is rolled back: the same database work, no commit.
        async with runtime.sessionmaker() as session:
            t = time.perf_counter()
            await apply_users(
                session,
                pbx_id=empty.id,
                run_id=run_id,
                plan=plan,
                apply_deletes=True,
                send_welcome=False,
                mail_configured=False,
                known_failures=set(),
            )
            ours_a.append(time.perf_counter() - t)
            await session.rollback()
        async with runtime.sessionmaker() as session:
            t = time.perf_counter()
            for i in range(0, len(rows_for_bare), 1000):
                await session.execute(insert(table_of(Extension)), rows_for_bare[i : i + 1000])
            bare_a.append(time.perf_counter() - t)
            await session.rollback()
    med = statistics.median
    return {
        "fetch_s_median": round(med(ours_f), 3),
        "bare_fetch_s_median": round(med(bare_f), 3),
        "ratio_fetch": round(med(ours_f) / med(bare_f), 2),
        "apply_s_median": round(med(ours_a), 3),
        "bare_apply_s_median": round(med(bare_a), 3),
        "ratio_apply": round(med(ours_a) / med(bare_a), 2),
    }


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
                    run = await sync_repo.claim_next(session, "bench", timedelta(minutes=30))
                assert run is not None
                ex = RunExecutor(runtime, run)
                t0 = time.perf_counter()
                status = await ex.execute()
                assert status in ("succeeded", "partial"), status
                return ex, time.perf_counter() - t0

            # Warm the emulator (its sorted-id caches) so both loops read from the same state.
            await bare_fetch(
                demo, await access_token(runtime, pbx["id"]), user_select("auto", "businessPhones")
            )
            full, full_wall = await execute()
            rss = peak_rss_mb()
            token = await access_token(runtime, pbx["id"])
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
            }
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
            # The ratios last, over repeated rounds (the run-once figures above include warm-up).
            result.update(await ratio_rounds(runtime, pbx["id"], full.run_id, demo, token))
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
    parser.add_argument("--one", action="store_true", help="one size and one database, here")
    args = parser.parse_args()
    if not args.one:
        # Each combination in a process of its own, so peak RSS belongs to that run alone.
        for size in args.sizes:
            for kind in args.databases:
                cmd = [
                    sys.executable,
                    __file__,
                    "--one",
                    "--sizes",
                    str(size),
                    "--databases",
                    kind,
                    "--port",
                    str(args.port),
                ]
                subprocess.run(cmd, check=True)
        return
    results: list[dict[str, Any]] = []
    size, kind = args.sizes[0], args.databases[0]
    workdir = Path(tempfile.mkdtemp(prefix="pbx-entra-bench-"))
    proc, demo = start_emulator(size, args.port, workdir / "emulator")
    try:
        await one(kind, size, demo, workdir, results)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
