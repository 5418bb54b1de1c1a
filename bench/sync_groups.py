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
import json
import shutil
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from harness import peak_rss_mb, service, start_emulator

from app.db import session_scope
from app.directory.models import ExtensionGroupMember


async def one(kind: str, users: int, demo: dict[str, Any], workdir: Path) -> dict[str, Any]:
    ctx = ssl.create_default_context(cafile=demo["ca_path"])
    ctl = httpx.Client(base_url=f"{demo['base_url']}/_emulator", verify=ctx, timeout=60)
    tid = demo["tenant_id"]
    try:
        async with service(
            kind, demo, workdir, max_extensions=100_000, max_extension_groups=1000
        ) as svc:
            api, h, runtime, execute = svc.api, svc.headers, svc.runtime, svc.execute_next
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
    proc, demo = start_emulator(
        workdir / "emulator",
        args.port,
        *("--users", str(args.users), "--groups", str(args.groups)),
        quiet=True,
    )
    try:
        await one(args.databases[0], args.users, demo, workdir)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
