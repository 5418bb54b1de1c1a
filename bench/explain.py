"""Explain benchmark: one user's explain against a PBX with 100k synced extensions, over the
emulator (its own process, as Graph is), through the public API.

    .venv/bin/python bench/explain.py [--users 100000] [--databases postgresql] [--rounds 30]

After a full initial sync of the tenant (auto numbers from 1000: one dense run of ~97k numbers),
each round explains three users: a synced one (an update is planned), a user new in Entra (a
create: the auto-number scan and the seat count run), and a deleted one that still holds an
extension. Printed per case: median, p95 and max wall time of the GET, Graph requests per call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import ssl
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import service, start_emulator


async def _timed(api: httpx.AsyncClient, h: dict[str, str], user: str) -> tuple[float, Any]:
    started = time.perf_counter()
    resp = await api.get("/api/v1/integration/user-sync/explain", params={"user": user}, headers=h)
    wall = time.perf_counter() - started
    assert resp.status_code == 200, resp.text
    return wall, resp.json()


async def fill_to(runtime: Any, pbx_id: str, total: int, have: int) -> None:
    """Manual extensions (7-digit numbers) up to `total` extensions in all."""
    from sqlalchemy import insert

    from app.db import new_id, session_scope, table_of, utcnow
    from app.directory.models import Extension

    now = utcnow()
    rows = [
        {
            "id": new_id(),
            "pbx_id": pbx_id,
            "number": str(7_000_000 + i),
            "first_name": f"Manual{i}",
            "managed_by": "pbx",
            "created_at": now,
            "updated_at": now,
        }
        for i in range(max(0, total - have))
    ]
    async with session_scope(runtime.sessionmaker) as session:
        for i in range(0, len(rows), 1000):
            await session.execute(insert(table_of(Extension)), rows[i : i + 1000])


async def _slow_statements(svc: Any, cases: dict[str, str]) -> None:
    """One more explain per case, printing its SQL statements that took over 10 ms."""
    from sqlalchemy import event

    engine = svc.runtime.sessionmaker.kw["bind"].sync_engine
    seen: list[tuple[float, str]] = []

    def before(conn: Any, cursor: Any, stmt: str, params: Any, ctx: Any, many: bool) -> None:
        ctx.bench_started = time.perf_counter()

    def after(conn: Any, cursor: Any, stmt: str, params: Any, ctx: Any, many: bool) -> None:
        seen.append((time.perf_counter() - ctx.bench_started, " ".join(stmt.split())[:160]))

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        for case, uid in cases.items():
            seen.clear()
            wall, _ = await _timed(svc.api, svc.headers, uid)
            slow = [(round(t * 1000, 1), q) for t, q in seen if t > 0.01]
            print(
                json.dumps(
                    {
                        "case": case,
                        "wall_ms": round(wall * 1000, 1),
                        "statements": len(seen),
                        "slow": slow,
                    }
                )
            )
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)


async def one(
    kind: str, size: int, rounds: int, demo: dict[str, Any], workdir: Path, trace_sql: bool = False
) -> None:
    async with service(kind, demo, workdir, max_extensions=100_000) as svc:
        api, h = svc.api, svc.headers
        await api.put(
            "/api/v1/integration/user-sync",
            json={"enabled": True, "range": {"mode": "all"}},
            headers=h,
        )
        _, sync_wall = await svc.execute_next()
        synced_count = (await api.get("/api/v1/integration/user-sync", headers=h)).json()[
            "summary"
        ]["synced"]
        # The PBX holds 100k extensions but for a few seats: the new user still fits.
        await fill_to(svc.runtime, svc.pbx["id"], 99_990, synced_count)
        count = 99_990 if synced_count < 99_990 else synced_count
        if kind == "postgresql":
            # As autovacuum leaves a table in steady state (visibility map, statistics).
            engine = svc.runtime.sessionmaker.kw["bind"]
            async with engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.exec_driver_sql("VACUUM ANALYZE extensions")
        ctx = ssl.create_default_context(cafile=demo["ca_path"])
        ctl = httpx.Client(
            base_url=f"{demo['base_url']}/_emulator/tenants/{demo['tenant_id']}",
            verify=ctx,
            timeout=60,
        )
        listed = ctl.get("/users", params={"top": 50}).json()
        ids = [u["id"] for u in (listed["value"] if isinstance(listed, dict) else listed)]
        synced = (
            await api.get(
                "/api/v1/extensions", params={"managed_by": "entra", "limit": 50}, headers=h
            )
        ).json()["items"]
        synced_ids = [e["entra_user_id"] for e in synced]
        changed, gone = synced_ids[0], synced_ids[1]
        ctl.patch(
            f"/users/{changed}", json={"jobTitle": f"Bench {uuid.uuid4().hex[:6]}"}
        ).raise_for_status()
        ctl.delete(f"/users/{gone}").raise_for_status()
        local = f"bench{uuid.uuid4().hex[:6]}"
        new = ctl.post(
            "/users",
            json={
                "userPrincipalName": f"{local}@{demo['domain']}"
                if "domain" in demo
                else f"{local}@bench.example",
                "displayName": "Bench New",
                "givenName": "Bench",
                "surname": "New",
                "accountEnabled": True,
                "userType": "Member",
            },
        ).json()["id"]
        assert ids
        cases = {
            "update (synced user)": changed,
            "create (new user)": new,
            "delete (deleted user)": gone,
        }
        walls: dict[str, list[float]] = {c: [] for c in cases}
        answers: dict[str, Any] = {}
        log = httpx.Client(base_url=f"{demo['base_url']}/_emulator", verify=ctx, timeout=60)
        graph_requests: dict[str, int] = {}
        for case, uid in cases.items():  # warm-up, and the Graph requests of one explain
            log.delete("/requests").raise_for_status()
            await _timed(api, h, uid)
            made = log.get("/requests").json()["value"]
            graph_requests[case] = sum(1 for r in made if "/v1.0/" in r["path"])
        baseline: list[float] = []
        for _ in range(rounds):
            started = time.perf_counter()
            assert (await api.get("/api/v1/pbx", headers=h)).status_code == 200
            baseline.append(time.perf_counter() - started)
            for case, uid in cases.items():
                wall, body = await _timed(api, h, uid)
                walls[case].append(wall)
                answers[case] = body
        print(
            json.dumps(
                {
                    "db": kind,
                    "case": "GET /api/v1/pbx (baseline)",
                    "median_ms": round(statistics.median(baseline) * 1000, 1),
                }
            )
        )
        if trace_sql:
            await _slow_statements(svc, cases)
        for case, values in walls.items():
            values.sort()
            body = answers[case]
            print(
                json.dumps(
                    {
                        "db": kind,
                        "extensions": count,
                        "case": case,
                        "action": body["outcome"]["action"],
                        "number": body["outcome"]["number"],
                        "graph_requests": graph_requests[case],
                        "rounds": rounds,
                        "median_ms": round(statistics.median(values) * 1000, 1),
                        "p95_ms": round(values[int(len(values) * 0.95) - 1] * 1000, 1),
                        "max_ms": round(values[-1] * 1000, 1),
                        "initial_sync_s": round(sync_wall, 1),
                    }
                ),
                flush=True,
            )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--databases", nargs="+", default=["postgresql"])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--port", type=int, default=18453)
    parser.add_argument("--trace-sql", action="store_true", help="print the slow statements")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="pbx-entra-bench-explain-"))
    proc, demo = start_emulator(
        workdir / "emulator",
        args.port,
        "--users",
        str(args.users),
        "--groups",
        "0",
        quiet=True,
        timeout=600,
    )
    try:
        for kind in args.databases:
            await one(kind, args.users, args.rounds, demo, workdir, args.trace_sql)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
