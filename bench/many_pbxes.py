"""Many PBXes at once: 1,000 PBXes with 50 users each, all scheduled for the same minute.

    .venv/bin/python bench/many_pbxes.py [--pbxes 1000] [--users 50] [--processes 1 2]
                                         [--latency-ms 100] [--concurrency 8]

The emulator runs in a process of its own with one generated tenant per PBX. The PBXes are
created and connected through the service's public API (MSAL, consent) and their initial runs
done by `pbx-entra serve` processes on PostgreSQL. Then every Graph request is delayed by
`--latency-ms` (the emulator's latency fault), so that runs are I/O-bound as against the real
Graph, and the serve processes start with their schedule clocks a few seconds before the shared
00:30 fire (SCHEDULE_CLOCK_START). Measured per process count: the time from the fire until every
scheduled run has finished, the peak RSS of each process, and `/webhooks/graph` latency (p50,
p99) from a light sender in another process during the burst. Each PBX must get exactly one
scheduled run, and every one must finish (`partial` where the generated tenant holds users that
can't sync; never `failed` or `interrupted`). Loopback only; bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import ROOT, database, start_emulator

from app import migrate
from app.config import Settings
from app.db import create_engine, session_scope, sessionmaker, utcnow
from app.demo import consent_fields
from app.main import create_app
from app.notifications.models import GraphSubscription
from app.notifications.webhooks import client_state_hash
from app.runs.models import SyncRun

ADMIN = "bench-admin"
STATE = "bench-client-state"
PUBLIC = "http://127.0.0.1:8000"


def _rss_peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _connect_all(
    url: str, demo: dict[str, Any], pbxes: int, users: int, concurrency: int
) -> list[str]:
    """Create the PBXes, each with a tenant of its own, connect them and turn user sync on."""
    ctx = demo["ca_path"]
    control = httpx.AsyncClient(base_url=f"{demo['base_url']}/_emulator", verify=ctx, timeout=120)
    settings = Settings(
        database_url=url,
        secret_key="bench-secret",
        admin_api_key=ADMIN,
        public_base_url=PUBLIC,
        login_base_url=demo["base_url"],
        graph_base_url=f"{demo['base_url']}/v1.0",
        ca_bundle=ctx,
        worker_enabled=False,
        scheduler_enabled=False,
        log_level="WARNING",
    )
    app = create_app(settings)
    ids: list[str] = []
    gate = asyncio.Semaphore(concurrency)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench", timeout=300
        ) as api,
    ):

        async def one(i: int) -> None:
            async with gate:
                suffix = uuid.uuid4().hex[:8]
                body = {
                    "id": str(uuid.uuid4()),
                    "display_name": f"Tenant {i}",
                    "domain": f"t{suffix}.onmicrosoft.com",
                    "users": users,
                    "groups": 0,
                    "seed": i + 1,
                }
                tenant = (await control.post("/tenants", json=body)).raise_for_status().json()
                tid = tenant["id"]
                registration = (
                    (
                        await control.post(
                            f"/tenants/{tid}/apps",
                            json={
                                "display_name": "PBX",
                                "redirect_uris": [f"{PUBLIC}/integration/callback"],
                            },
                        )
                    )
                    .raise_for_status()
                    .json()
                )
                await control.put(
                    f"/tenants/{tid}/settings",
                    json={"auto_consent_user": tenant["admin"]["upn"]},
                )
                op = {"Authorization": f"Bearer {ADMIN}"}
                pbx = (
                    await api.post(
                        "/api/v1/pbxes", json={"name": f"pbx-{i}", "timezone": "UTC"}, headers=op
                    )
                ).json()
                h = {"Authorization": f"Bearer {pbx['api_key']}"}
                put = await api.put(
                    "/api/v1/integration",
                    json={
                        "client_id": registration["app_id"],
                        "tenant_id": tid,
                        "client_secret": registration["secret"]["value"],
                    },
                    headers=h,
                )
                fields = await consent_fields(put.json()["authorization_url"], ctx)
                done = await api.post("/integration/callback", data=fields)
                assert done.status_code == 200, done.text[:200]
                resp = await api.put(
                    "/api/v1/integration/user-sync", json={"enabled": True}, headers=h
                )
                assert resp.status_code == 200, resp.text
                ids.append(pbx["id"])

        await asyncio.gather(*(one(i) for i in range(pbxes)))
    await control.aclose()
    return ids


def _serve(
    url: str, demo: dict[str, Any], port: int, concurrency: int, nice: int = 0, **env: str
) -> Any:
    """A `pbx-entra serve` process; `nice` lowers its CPU priority (as `nice -n` would)."""
    environment = {
        **os.environ,
        "DATABASE_URL": url,
        "SECRET_KEY": "bench-secret",
        "ADMIN_API_KEY": ADMIN,
        "PUBLIC_BASE_URL": PUBLIC,
        "LOGIN_BASE_URL": demo["base_url"],
        "GRAPH_BASE_URL": f"{demo['base_url']}/v1.0",
        "CA_BUNDLE": demo["ca_path"],
        "LOG_LEVEL": "WARNING",
        "WORKER_CONCURRENCY": str(concurrency),
        "CHANGE_BATCH_SIZE": str(10**9),
        "CHANGE_DELAY_SECONDS": "86400",
        **env,
    }
    command = [sys.executable, "-m", "app", "serve", "--port", str(port), "--no-migrate"]
    proc = subprocess.Popen(
        ["nice", "-n", str(nice), *command] if nice else command,
        env=environment,
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("a serve process did not become ready")


async def _count(maker: Any, *where: Any) -> int:
    async with session_scope(maker) as session:
        stmt = select(func.count()).select_from(SyncRun).where(*where)
        return int((await session.execute(stmt)).scalar_one())


async def _wait(maker: Any, n: int, timeout: float, *where: Any) -> float:
    started = time.monotonic()
    while await _count(maker, *where) < n:
        if time.monotonic() - started > timeout:
            raise SystemExit(f"only {await _count(maker, *where)} of {n} runs finished")
        await asyncio.sleep(0.25)
    return time.monotonic() - started


async def burst(args: argparse.Namespace, processes: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-many-"))
    emulator, demo = start_emulator(workdir / "emulator", args.emulator_port, quiet=True)
    url, drop = await database("postgresql", workdir)
    procs: list[Any] = []
    control = httpx.Client(
        base_url=f"{demo['base_url']}/_emulator", verify=demo["ca_path"], timeout=60
    )
    try:
        await asyncio.to_thread(migrate.upgrade, url)
        t = time.monotonic()
        ids = await _connect_all(url, demo, args.pbxes, args.users, args.setup_concurrency)
        setup_s = time.monotonic() - t
        maker = sessionmaker(create_engine(url))
        # The initial runs, done by the serve processes before the measured burst.
        ports = [args.port + i for i in range(processes)]
        procs = [_serve(url, demo, p, args.concurrency) for p in ports]
        initial_s = await _wait(
            maker, len(ids), 1800, SyncRun.trigger == "initial", SyncRun.finished_at.is_not(None)
        )
        for p in procs:
            p.terminate()
            p.wait(timeout=60)
        async with session_scope(maker) as session:
            session.add(
                GraphSubscription(
                    id="bench-sub",
                    pbx_id=ids[0],
                    resource="users",
                    change_type="updated,deleted",
                    client_state_hash=client_state_hash(STATE),
                    expires_at=utcnow() + timedelta(days=1),
                )
            )
        control.post(
            "/faults",
            json={"action": "latency", "latency_ms": args.latency_ms, "path": r"^/v1\.0/"},
        ).raise_for_status()
        # Every PBX's schedule is the default daily 00:30 (UTC): start the clocks just before it.
        fire = (datetime.now(UTC) + timedelta(days=1)).replace(
            hour=0, minute=30, second=0, microsecond=0
        )
        clock = (fire - timedelta(seconds=args.lead_seconds)).isoformat()
        procs = [_serve(url, demo, p, args.concurrency, SCHEDULE_CLOCK_START=clock) for p in ports]
        sender = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "bench" / "webhooks.py"),
                "--send",
                f"http://127.0.0.1:{ports[0]}/webhooks/graph",
                "--notifications",
                str(args.notifications),
                "--concurrency",
                "2",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        scheduled = (SyncRun.trigger == "schedule",)
        await _wait(maker, 1, 600, *scheduled)
        burst_s = await _wait(maker, len(ids), 900, *scheduled, SyncRun.finished_at.is_not(None))
        async with session_scope(maker) as session:
            rows = (
                await session.execute(
                    select(
                        SyncRun.pbx_id, SyncRun.status, SyncRun.queued_at, SyncRun.finished_at
                    ).where(*scheduled)
                )
            ).all()
        first_queued = min(r.queued_at for r in rows)
        last_finished = max(r.finished_at for r in rows)
        peaks = [round(_rss_peak_mb(p.pid), 1) for p in procs]
        out, _ = sender.communicate(timeout=600)
        webhook = json.loads(out.strip().splitlines()[-1])
        per_pbx = {}
        for r in rows:
            per_pbx[r.pbx_id] = per_pbx.get(r.pbx_id, 0) + 1
        return {
            "processes": processes,
            "pbxes": len(ids),
            "users_per_pbx": args.users,
            "latency_ms": args.latency_ms,
            "setup_s": round(setup_s, 1),
            "initial_runs_s": round(initial_s, 1),
            "burst_s": round((last_finished - first_queued).total_seconds(), 1),
            "burst_wait_s": round(burst_s, 1),
            "scheduled_runs": len(rows),
            "pbxes_with_one_run": sum(1 for n in per_pbx.values() if n == 1),
            "not_succeeded": sum(1 for r in rows if r.status != "succeeded"),
            # Generated tenants hold users that can't sync (no usable name): `partial` is right.
            "statuses": dict(sorted(Counter(r.status for r in rows).items())),
            "peak_rss_mb": peaks,
            "webhook_p50_ms": webhook["p50_ms"],
            "webhook_p99_ms": webhook["p99_ms"],
            "webhook_posts": webhook["posts"],
        }
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=60)
        control.close()
        emulator.terminate()
        emulator.wait(timeout=30)
        if drop:
            await drop()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pbxes", type=int, default=1000)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--setup-concurrency", type=int, default=8)
    parser.add_argument("--notifications", type=int, default=4000)
    parser.add_argument("--lead-seconds", type=int, default=8)
    parser.add_argument("--port", type=int, default=18200)
    parser.add_argument("--emulator-port", type=int, default=18443)
    args = parser.parse_args()
    for n in args.processes:
        print(json.dumps(await burst(args, n)), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
