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
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import peak_rss_mb, service, start_emulator

from app.db import session_scope, utcnow
from app.directory.models import Extension
from app.integration.tokens import access_token
from app.sync.users_model import user_select


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
    async with service(kind, demo, workdir, max_extensions=100_000) as svc:
        api, pbx, h, runtime = svc.api, svc.pbx, svc.headers, svc.runtime
        saved = (
            await api.put(
                "/api/v1/integration/user-sync",
                json={"enabled": True, "range": {"mode": "all"}},
                headers=h,
            )
        ).json()
        execute = svc.execute_next
        # Warm the emulator (its sorted-id caches) so both loops read from the same state.
        await bare_fetch(
            demo, await access_token(runtime, pbx["id"]), user_select("auto", "businessPhones")
        )
        full, full_wall = await execute()
        rss = peak_rss_mb()
        token = await access_token(runtime, pbx["id"])
        created = (await api.get(f"/api/v1/sync-runs/{saved['initial_run_id']}", headers=h)).json()[
            "users"
        ]["created"]
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
            ctx = ssl.create_default_context(cafile=demo["ca_path"])
            ctl = httpx.Client(base_url=f"{demo['base_url']}/_emulator", verify=ctx, timeout=60)
            users = ctl.get(f"/tenants/{demo['tenant_id']}/users", params={"top": 100}).json()
            ids = [u["id"] for u in (users["value"] if isinstance(users, dict) else users)][:100]
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
    proc, demo = start_emulator(
        workdir / "emulator", args.port, "--users", str(size), "--groups", "0", quiet=True
    )
    try:
        await one(kind, size, demo, workdir, results)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
