"""Group-sync benchmark against the emulator: 500 groups holding about 100k memberships, a full
sync and delta runs, into PostgreSQL and SQLite.

    .venv/bin/python bench/sync_groups.py [--users 20000] [--groups 500] [--databases postgresql sqlite]

Users are synced first (their extensions are what groups hold), then group sync is turned on and
its initial run is measured; then a quiet delta run, and a delta run after 10 membership changes
and 10 renames. Each database runs in a process of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from sync_users import KEY, database, peak_rss_mb

from app import migrate
from app.config import Settings
from app.db import session_scope
from app.directory.models import ExtensionGroupMember
from app.main import create_app
from app.sync import repository as sync_repo
from app.sync.engine import RunExecutor


def start_emulator(
    users: int, groups: int, port: int, state: Path
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    cmd = [sys.executable, "-m", "emulator", "--port", str(port), "--state", str(state)]
    cmd += ["--demo", "--users", str(users), "--groups", str(groups)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)
    demo_file = state / "demo.json"
    for _ in range(600):
        if demo_file.exists():
            demo: dict[str, Any] = json.loads(demo_file.read_text())
            try:
                ctx = ssl.create_default_context(cafile=demo["ca_path"])
                health = httpx.get(f"{demo['base_url']}/_emulator/health", verify=ctx, timeout=2)
                if health.status_code == 200:
                    return proc, demo
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("emulator did not start")


async def one(kind: str, users: int, demo: dict[str, Any], workdir: Path) -> dict[str, Any]:
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
    ctx = ssl.create_default_context(cafile=demo["ca_path"])
    ctl = httpx.Client(base_url=f"{demo['base_url']}/_emulator", verify=ctx, timeout=60)
    tid = demo["tenant_id"]
    try:
        h = {"Authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench", timeout=600
        ) as api:
            pbx = (await api.get("/api/v1/pbx", headers=h)).json()
            await api.patch(
                f"/api/v1/pbxes/{pbx['id']}",
                json={"max_extensions": 100_000, "max_extension_groups": 1000},
                headers={"Authorization": "Bearer bench-admin"},
            )
            put = (
                await api.put(
                    "/api/v1/integration",
                    json={k: demo[k] for k in ("client_id", "tenant_id", "client_secret")},
                    headers=h,
                )
            ).json()
            page = httpx.get(put["authorization_url"], verify=ctx).text
            fields = {
                k: html.unescape(v) for k, v in re.findall(r"name='([^']+)' value='([^']*)'", page)
            }
            assert (await api.post("/integration/callback", data=fields)).status_code == 200
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

            await api.put("/api/v1/integration/user-sync", json={"enabled": True}, headers=h)
            await execute()
            await api.put("/api/v1/integration/group-sync", json={"enabled": True}, headers=h)
            full, full_wall = await execute()
            async with session_scope(runtime.sessionmaker) as session:
                memberships = (
                    await session.execute(select(func.count()).select_from(ExtensionGroupMember))
                ).scalar_one()
            counts = full.report.counts["groups"]
            result: dict[str, Any] = {
                "db": kind,
                "users": users,
                "groups_created": counts["created"],
                "memberships": memberships,
                "skipped_members": counts["skipped_members"],
                "wall_s": round(full_wall, 2),
                "fetch_s": round(full.timings["groups_fetch"], 2),
                "plan_s": round(full.timings["groups_plan"], 2),
                "apply_s": round(full.timings["groups_apply"], 2),
                "graph_requests": full.graph.stats.requests,
                "peak_rss_mb": round(peak_rss_mb()),
            }
            await api.post("/api/v1/integration/sync", json={"scopes": ["groups"]}, headers=h)
            quiet, quiet_wall = await execute()
            result.update(
                quiet_wall_s=round(quiet_wall, 3), quiet_graph_requests=quiet.graph.stats.requests
            )
            # 10 membership changes and 10 renames.
            listed = ctl.get(f"/tenants/{tid}/groups").json()
            groups = listed["value"] if isinstance(listed, dict) else listed
            everyone = ctl.get(f"/tenants/{tid}/users", params={"top": 50}).json()
            people = [
                u["id"] for u in (everyone["value"] if isinstance(everyone, dict) else everyone)
            ]
            for i, group in enumerate(groups[:10]):
                ctl.post(
                    f"/tenants/{tid}/groups/{group['id']}/members", json={"id": people[i + 20]}
                )
            for group in groups[10:20]:
                ctl.patch(
                    f"/tenants/{tid}/groups/{group['id']}",
                    json={"displayName": f"{group['displayName']} renamed"},
                ).raise_for_status()
            await api.post("/api/v1/integration/sync", json={"scopes": ["groups"]}, headers=h)
            delta, delta_wall = await execute()
            result.update(
                delta_wall_s=round(delta_wall, 3),
                delta_graph_requests=delta.graph.stats.requests,
                delta_updated=delta.report.counts["groups"]["updated"],
            )
            print(json.dumps(result), flush=True)
            return result
    finally:
        ctl.close()
        await lifespan.__aexit__(None, None, None)
        if drop:
            await drop()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--groups", type=int, default=500)
    parser.add_argument("--databases", nargs="+", default=["postgresql", "sqlite"])
    parser.add_argument("--port", type=int, default=18444)
    parser.add_argument("--one", action="store_true", help="one database, in this process")
    args = parser.parse_args()
    if not args.one:
        for kind in args.databases:
            cmd = [sys.executable, __file__, "--one", "--databases", kind]
            cmd += ["--users", str(args.users), "--groups", str(args.groups)]
            subprocess.run([*cmd, "--port", str(args.port)], check=True)
        return
    workdir = Path(tempfile.mkdtemp(prefix="pbx-entra-bench-"))
    proc, demo = start_emulator(args.users, args.groups, args.port, workdir / "emulator")
    try:
        await one(args.databases[0], args.users, demo, workdir)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
