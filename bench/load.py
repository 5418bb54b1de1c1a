"""Load during syncs: the directory API, the webhook, SSO logins and presence changes driven
together from another process while a 100k-user sync and a 1,000-PBX schedule burst run.

    .venv/bin/python bench/load.py [--users 100000] [--pbxes 1000] [--pbx-users 50]
        [--seconds 60] [--latency-ms 100] [--processes 2] [--api-processes 0]
        [--worker-nice 0] [--emulator-nice 0] [--mix list=10,get=20,...]

Set-up as bench/README.md describes; then, for `--seconds`, a driver process (this file with
`--driver`) sends a paced, bounded mix to the `pbx-entra serve` processes on PostgreSQL while the
big PBX runs a full user sync and the shared-minute schedule burst fires. Per kind: requests,
throughput, p50/p99, 5xx and other errors. Exit status 1 when a target is missed (any 5xx; p99
250 ms for list/get, 100 ms for the webhook) or a sync did not overlap the window. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import service, start_emulator
from many_pbxes import _connect_all, _rss_peak_mb, _serve, _wait
from presence import CYCLE, pct
from sso import RETURN_URL, Dance
from webhooks import STATE, sender

from app.db import session_scope, utcnow
from app.notifications.models import GraphSubscription
from app.notifications.webhooks import client_state_hash
from app.runs.models import SyncRun

KINDS = ("list", "get", "patch", "webhook", "sso", "presence")
READS = ("list", "get")
PASSWORD = "Passw0rd!"
IN_FLIGHT = 16
CURRENT: ContextVar[dict[str, Any]] = ContextVar("current")
FIVE_XX = re.compile(r'^pbx_entra_http_requests_total\{.*status="5\d\d"')
OPTIONS: dict[str, Any] = {
    "users": 100_000, "pbxes": 1000, "pbx_users": 50, "seconds": 60.0, "latency_ms": 100,
    "processes": 2, "api_processes": 0, "concurrency": 8, "setup_concurrency": 8, "manual": 100, "sso_users": 20,
    "presence_users": 200, "worker_nice": 0, "emulator_nice": 0, "presence_grace": 35.0, "lead_seconds": 15, "port": 18300,
    "emulator_port": 18543,
}  # fmt: skip


# The driver (its own process) -------------------------------------------------------------------


async def _on_response(resp: httpx.Response) -> None:
    """Every 5xx the service answers, charged to the operation (the task) that got it."""
    op = CURRENT.get(None)
    if op is not None and resp.status_code >= 500 and "status" not in op:
        await resp.aread()
        op.update(status=resp.status_code, body=resp.text[:200])


class Recorder:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.lat: dict[str, list[float]] = {k: [] for k in KINDS}
        self.at: dict[str, list[float]] = {k: [] for k in KINDS}
        self.e5, self.other = dict.fromkeys(KINDS, 0), dict.fromkeys(KINDS, 0)
        self.samples: dict[str, list[str]] = {k: [] for k in KINDS}

    async def timed(self, kind: str, call: Any) -> None:
        op: dict[str, Any] = {}
        CURRENT.set(op)  # each operation runs in a task of its own: a context of its own
        started, error = time.perf_counter(), None
        try:
            await call()
        except Exception as exc:  # every failure is counted, none stops the load
            error = repr(exc)[:200]
        self.lat[kind].append(time.perf_counter() - started)
        self.at[kind].append(started - self.t0)
        if "status" in op:
            self.e5[kind] += 1
            error = f"{op['status']} {op.get('body', '')}"
        elif error:
            self.other[kind] += 1
        if error and len(self.samples[kind]) < 5:
            self.samples[kind].append(error)

    async def paced(self, kind: str, rate: float, seconds: float, call: Any) -> None:
        """`rate` operations a second for `seconds`, at most IN_FLIGHT at once; stragglers get
        60 s more."""
        gate, t0, tasks = asyncio.Semaphore(IN_FLIGHT), time.monotonic(), []

        async def one(i: int) -> None:
            async with gate:
                await self.timed(kind, lambda: call(i))

        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
            tasks.append(asyncio.create_task(one(i)))
        if tasks:
            late = (await asyncio.wait(tasks, timeout=60))[1]
            for task in late:
                task.cancel()
            self.other[kind] += len(late)

    def summary(self, seconds: float) -> dict[str, dict[str, Any]]:
        def ms(v: float) -> float:
            return round(1000 * v, 1)

        return {
            k: {
                "requests": len(lat),
                "per_s": round(len(lat) / seconds, 1),
                **({"p50_ms": ms(pct(lat, 0.5)), "p99_ms": ms(pct(lat, 0.99))} if lat else {}),
                "max_ms": ms(max(lat, default=0)),
                "errors_5xx": self.e5[k],
                "other_errors": self.other[k],
                "error_samples": self.samples[k],
                "timeline": [(round(a, 2), ms(b)) for a, b in zip(self.at[k], lat, strict=True)],
            }
            for k, lat in self.lat.items()
        }


def _calls(cfg: dict[str, Any], clients: list[Any], last: dict[str, str]) -> dict[str, Any]:
    """The i-th operation of each kind."""
    h = {"Authorization": f"Bearer {cfg['key']}"}
    demo, rng = cfg["demo"], random.Random(7)
    hooks = [f"{b}/webhooks/graph" for b in cfg["bases"]]
    dances = [Dance(c, cfg["pbx_id"], demo) for c in clients]
    ctx = ssl.create_default_context(cafile=demo["ca_path"])
    tenant = f"{demo['base_url']}/_emulator/tenants/{demo['tenant_id']}"
    control = httpx.AsyncClient(base_url=tenant, verify=ctx, timeout=30)

    def pick(seq: list[Any], i: int) -> Any:
        return seq[i % len(seq)]

    async def list_(i: int) -> None:
        resp = await pick(clients, i).get("/api/v1/extensions", params={"limit": 100}, headers=h)
        resp.raise_for_status()

    async def get(i: int) -> None:
        ext = rng.choice(cfg["ext_ids"])
        (await pick(clients, i).get(f"/api/v1/extensions/{ext}", headers=h)).raise_for_status()

    async def patch(i: int) -> None:
        path, body = f"/api/v1/extensions/{pick(cfg['manual_ids'], i)}", {"job_title": f"L{i}"}
        (await pick(clients, i).patch(path, json=body, headers=h)).raise_for_status()

    async def webhook(i: int) -> None:
        try:  # one POST of one notification with the subscription's clientState
            await sender(pick(hooks, i), 1, 1, 1)
        except AssertionError as exc:  # the sender's way of saying: not 202
            status = re.search(r"HTTP/1\.[01] (\d{3})", str(exc))
            if status and int(status.group(1)) >= 500:
                CURRENT.get().update(status=int(status.group(1)), body=str(exc)[:200])
            raise

    async def sso(i: int) -> None:
        upn, number = pick(cfg["people"], i)
        if (got := await pick(dances, i).sign_in(upn, PASSWORD)) != number:
            raise RuntimeError(f"signed in as {got}, not {number}")

    async def presence(i: int) -> None:
        user, ext = pick(cfg["followers"], i)
        availability = CYCLE[i % len(CYCLE)]
        body = {"availability": availability, "activity": availability}
        (await control.put(f"/users/{user}/presence", json=body)).raise_for_status()
        last[ext] = availability

    kinds = [list_, get, patch, webhook, sso, presence]
    return {**dict(zip(KINDS, kinds, strict=True)), "control": control}


async def drive(cfg: dict[str, Any]) -> dict[str, Any]:
    rec, last, h = Recorder(), {}, {"Authorization": f"Bearer {cfg['key']}"}
    hook = {"response": [_on_response]}
    clients = [
        httpx.AsyncClient(base_url=b, timeout=30, trust_env=False, event_hooks=hook)
        for b in cfg["bases"]
    ]
    calls = _calls(cfg, clients, last)
    warm = Recorder()  # two of each, not recorded: the serve processes have just started
    for k in (k for k in KINDS if cfg["mix"][k]):
        for i in range(2):
            await warm.timed(k, lambda k=k, i=i: calls[k](i))
    print("window", flush=True)  # the orchestrator starts the big PBX's sync now
    rec.t0, started, wall0 = time.perf_counter(), time.monotonic(), time.time()
    await asyncio.gather(
        *(rec.paced(k, cfg["mix"][k], cfg["seconds"], calls[k]) for k in KINDS if cfg["mix"][k])
    )
    seconds = time.monotonic() - started
    window = {"start": wall0, "end": time.time(), "seconds": round(seconds, 1)}
    # Teams changes reach extensions by polling (no HTTPS here, so no subscription): each changed
    # extension's presence is read once, a polling period and a margin later.
    await asyncio.sleep(cfg["presence_grace"])
    applied = 0
    for ext, availability in last.items():
        resp = await clients[0].get(f"/api/v1/extensions/{ext}/presence", headers=h)
        applied += resp.status_code == 200 and resp.json()["teams_availability"] == availability
    for c in [*clients, calls["control"]]:
        await c.aclose()
    summary = rec.summary(seconds)
    return {"window": window, "kinds": summary, "presence_applied": f"{applied}/{len(last)}"}


# The orchestrator ----------------------------------------------------------------------------


async def prepare_big(svc: Any, args: argparse.Namespace, demo: dict[str, Any]) -> dict[str, Any]:
    """The big PBX synced, manual extensions, SSO users consented, Teams presence followed."""
    api, h = svc.api, svc.headers

    async def put(path: str, body: dict[str, Any]) -> None:
        (await api.put(path, json=body, headers=h)).raise_for_status()

    await put("/api/v1/integration/user-sync", {"enabled": True, "range": {"mode": "all"}})
    _, sync_s = await svc.execute_next()
    manual = []
    for i in range(args.manual):
        body = {"number": str(90_000_000 + i), "first_name": "Load", "last_name": f"Manual {i}"}
        resp = await api.post("/api/v1/extensions", json=body, headers=h)
        manual.append(resp.raise_for_status().json()["id"])
    params = {"limit": 1000, "managed_by": "entra"}
    synced = (await api.get("/api/v1/extensions", params=params, headers=h)).json()["items"]
    await put("/api/v1/integration/sso", {"enabled": True, "allowed_return_urls": [RETURN_URL]})
    await put("/api/v1/integration/presence-sync", {"enabled": True})
    ctx = ssl.create_default_context(cafile=demo["ca_path"])
    tenant = f"{demo['base_url']}/_emulator/tenants/{demo['tenant_id']}"
    people, followers = [], []
    async with httpx.AsyncClient(base_url=tenant, verify=ctx, timeout=60) as ctl:
        (await ctl.put("/settings", json={"auto_consent_user": None})).raise_for_status()
        dance = Dance(api, svc.pbx["id"], demo)
        for e in synced[: args.sso_users]:  # each consents once, as in bench/sso.py
            upn = (await ctl.get(f"/users/{e['entra_user_id']}")).json()["userPrincipalName"]
            assert await dance.sign_in(upn, PASSWORD, consent=True) == e["number"]
            people.append((upn, e["number"]))
    for e in synced[max(0, len(synced) - args.presence_users) :]:
        await put(f"/api/v1/extensions/{e['id']}/teams-presence", {"enabled": True})
        followers.append((e["entra_user_id"], e["id"]))
    # The subscription bench/webhooks.py's sender posts to, with its clientState.
    sub = {"id": "bench-sub", "resource": "users", "change_type": "updated,deleted"}
    sub.update(pbx_id=svc.pbx["id"], client_state_hash=client_state_hash(STATE))
    async with session_scope(svc.runtime.sessionmaker) as session:
        session.add(GraphSubscription(**sub, expires_at=utcnow() + timedelta(days=1)))
    ids = [e["id"] for e in synced] + manual
    return {
        "big_initial_sync_s": round(sync_s, 1),
        "driver": {"ext_ids": ids, "manual_ids": manual, "people": people, "followers": followers},
    }


def _epoch(value: Any) -> float:  # a run's time, from the API (a string) or the database
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return float(value.timestamp())


async def big_run(svc: Any, run_id: str, timeout: float) -> dict[str, Any]:
    deadline, path = time.monotonic() + timeout, f"/api/v1/sync-runs/{run_id}"
    while not (run := (await svc.api.get(path, headers=svc.headers)).json())["finished_at"]:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    keys = ("trigger", "status", "graph_requests", "started_at", "finished_at", "users")
    wall = _epoch(run["finished_at"]) - _epoch(run["started_at"]) if run["finished_at"] else None
    return {**{k: run[k] for k in keys}, "wall_s": wall and round(wall, 1)}


async def burst_runs(maker: Any, ids: list[str]) -> dict[str, Any]:
    scheduled = (SyncRun.trigger == "schedule", SyncRun.pbx_id.in_(ids))
    try:
        await _wait(maker, 1, 600, *scheduled)
        await _wait(maker, len(ids), 1800, *scheduled, SyncRun.finished_at.is_not(None))
    except SystemExit as exc:  # _wait's way of saying it timed out
        return {"error": str(exc)}
    times = (func.min(SyncRun.queued_at), func.max(SyncRun.finished_at), func.count())
    stmt = select(SyncRun.status, *times).where(*scheduled).group_by(SyncRun.status)
    async with session_scope(maker) as session:
        rows = (await session.execute(stmt)).all()
    first, last = min(r[1] for r in rows), max(r[2] for r in rows)  # first queued, last done
    statuses = {r[0]: r[3] for r in rows}
    wall = round(_epoch(last) - _epoch(first), 1)
    times = {"started_at": first, "finished_at": last, "wall_s": wall}
    return {"runs": sum(statuses.values()), "statuses": statuses, **times}


async def measure(
    args: argparse.Namespace, svc: Any, plan: dict[str, Any], ids: list[str], workdir: Path
) -> dict[str, Any]:
    """The window: the driver started, then the big PBX's full sync asked for; the burst fires."""
    bases = [f"http://127.0.0.1:{p}" for p in _api_ports(args)]
    cfg = {**plan["driver"], "bases": bases, "key": svc.headers["Authorization"].split()[1]}
    cfg.update(pbx_id=svc.pbx["id"], demo=args.demo, seconds=args.seconds, mix=args.mix)
    (workdir / "driver.json").write_text(json.dumps({**cfg, "presence_grace": args.presence_grace}))
    load_before = os.getloadavg()[0]
    driver = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--driver", str(workdir / "driver.json"), stdout=subprocess.PIPE
    )
    burst = asyncio.create_task(burst_runs(svc.runtime.sessionmaker, ids))
    api, h = svc.api, svc.headers  # in this process: the serve processes' workers run the sync
    try:
        assert driver.stdout is not None
        await asyncio.wait_for(driver.stdout.readline(), 300)  # its window has begun
        # A rule change makes the next run a full listing; Update Now starts it.
        rule = {"enabled": True, "range": {"mode": "all"}, "associate_by_email": True}
        (await api.put("/api/v1/integration/user-sync", json=rule, headers=h)).raise_for_status()
        run = await api.post("/api/v1/integration/sync", json={"scopes": ["users"]}, headers=h)
        out, _ = await asyncio.wait_for(driver.communicate(), args.seconds + 400)
    except BaseException:
        driver.kill()
        raise
    load_after = os.getloadavg()[0]
    result = json.loads(out.decode().strip().splitlines()[-1])
    big = await big_run(svc, run.raise_for_status().json()["id"], 1800)
    loads = [round(load_before, 1), round(load_after, 1)]
    result.update(big_sync=big, burst=await burst, load_average=loads)
    w = result["window"]
    for part in (big, result["burst"]):  # how long each ran during the window
        if part.get("finished_at"):
            end, start = _epoch(part["finished_at"]), _epoch(part["started_at"])
            part["in_window_s"] = round(max(0, min(end, w["end"]) - max(start, w["start"])), 1)
            part["window_offsets_s"] = [round(start - w["start"], 1), round(end - w["start"], 1)]

    # p99 of the operations that overlapped the burst, the big sync (but not the burst), neither.
    def phase(at: float, ms: float) -> str:
        for name in ("burst", "big_sync"):
            lo, hi = result[name].get("window_offsets_s", (1, 0))
            if at <= hi and at + ms / 1000 >= lo:
                return name
        return "quiet"

    for s in result["kinds"].values():
        split: dict[str, list[float]] = {"big_sync": [], "burst": [], "quiet": []}
        for at, ms in s.pop("timeline"):
            split[phase(at, ms)].append(ms)
        s["p99_by_phase_ms"] = {k: pct(v, 0.99) if v else None for k, v in split.items()}
    return result


def _api_ports(args: argparse.Namespace) -> list[int]:
    """The processes the driver sends to: the serve processes, or with `--api-processes` the
    API-only ones (WORKER_ENABLED and SCHEDULER_ENABLED off) started beside them."""
    first = args.port + args.processes
    if args.api_processes:
        return [first + i for i in range(args.api_processes)]
    return [args.port + i for i in range(args.processes)]


def _stop(procs: list[Any]) -> None:
    for p in procs:
        p.terminate()
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()


async def orchestrate(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    tenant = ("--users", str(args.users), "--groups", "0")
    emulator, demo = start_emulator(workdir / "emulator", args.emulator_port, *tenant, quiet=True)
    # The emulator stands in for Microsoft's cloud, which does not share the service's cores.
    os.setpriority(os.PRIO_PROCESS, emulator.pid, args.emulator_nice)
    args.demo = {k: demo[k] for k in ("base_url", "tenant_id", "ca_path")}
    procs: list[Any] = []
    ports = [args.port + i for i in range(args.processes)]
    try:
        async with service("postgresql", demo, workdir, max_extensions=100_000) as svc:
            t = time.monotonic()
            plan = await prepare_big(svc, args, demo)
            url, maker = svc.runtime.settings.database_url, svc.runtime.sessionmaker
            ids = await _connect_all(url, demo, args.pbxes, args.pbx_users, args.setup_concurrency)
            procs = [_serve(url, demo, p, args.concurrency) for p in ports]
            done = (SyncRun.trigger == "initial", SyncRun.finished_at.is_not(None))
            await _wait(maker, len(ids), 3600, *done, SyncRun.pbx_id.in_(ids))
            _stop(procs)
            setup_s = round(time.monotonic() - t, 1)
            fault = {"action": "latency", "latency_ms": args.latency_ms, "path": r"^/v1\.0/"}
            ctx = ssl.create_default_context(cafile=demo["ca_path"])
            faults = f"{demo['base_url']}/_emulator/faults"
            httpx.post(faults, json=fault, verify=ctx).raise_for_status()
            tomorrow = datetime.now(UTC) + timedelta(days=1)
            fire = tomorrow.replace(hour=0, minute=30, second=0, microsecond=0)
            clock = (fire - timedelta(seconds=args.lead_seconds)).isoformat()
            env = {"SCHEDULE_CLOCK_START": clock}
            nice = args.worker_nice
            procs = [_serve(url, demo, p, args.concurrency, nice, **env) for p in ports]
            api_only = {"WORKER_ENABLED": "false", "SCHEDULER_ENABLED": "false"}
            if args.api_processes:
                procs += [_serve(url, demo, p, 1, **api_only) for p in _api_ports(args)]
            result = await measure(args, svc, plan, ids, workdir)
            # The service's own count of its 5xx answers, by route.
            every = sorted({*ports, *_api_ports(args)})
            metrics = "\n".join(httpx.get(f"http://127.0.0.1:{p}/metrics").text for p in every)
            result.update(
                sizes={k: getattr(args, k) for k in OPTIONS if k not in ("port", "emulator_port")},
                setup_s=setup_s,
                big_initial_sync_s=plan["big_initial_sync_s"],
                peak_rss_mb=[round(_rss_peak_mb(p.pid)) for p in procs],
                service_5xx=[line for line in metrics.splitlines() if FIVE_XX.match(line)],
            )
            _stop(procs)  # before the database is dropped
            return result
    finally:
        _stop([*procs, emulator])
        shutil.rmtree(workdir, ignore_errors=True)


def verdict(result: dict[str, Any]) -> dict[str, bool]:
    kinds = result["kinds"]
    return {
        "no_5xx": not result["service_5xx"] and all(k["errors_5xx"] == 0 for k in kinds.values()),
        "reads_p99_under_250ms": all(kinds[k].get("p99_ms", 0) < 250 for k in READS),
        "webhook_p99_under_100ms": kinds["webhook"].get("p99_ms", 0) < 100,
        "big_sync_in_window": result["big_sync"].get("in_window_s", 0) > 0,
        "burst_in_window": result["burst"].get("in_window_s", 0) > 0,
    }


def table(result: dict[str, Any]) -> str:
    head = "| kind | requests | per s | p50 | p99 | max | 5xx | other errors | p99: big sync / burst / quiet |"
    rows = [head, "|---" * 9 + "|"]
    for k, s in result["kinds"].items():
        rows.append(
            f"| {k} | {s['requests']:,} | {s['per_s']} | {s.get('p50_ms')} ms "
            f"| {s.get('p99_ms')} ms | {s['max_ms']} ms | {s['errors_5xx']} | {s['other_errors']} "
            f"| {' / '.join(str(v) for v in s['p99_by_phase_ms'].values())} ms |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for name, default in OPTIONS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    parser.add_argument("--mix", default="list=10,get=20,patch=5,webhook=20,sso=1,presence=2")
    parser.add_argument("--driver", help=argparse.SUPPRESS)  # the driver process's own mode
    args = parser.parse_args()
    if args.driver:
        print(json.dumps(asyncio.run(drive(json.loads(Path(args.driver).read_text())))))
        return
    mix = dict(part.split("=") for part in args.mix.split(","))
    if set(mix) - set(KINDS):
        parser.error(f"--mix kinds are {', '.join(KINDS)}")
    args.mix = {k: float(mix.get(k, 0)) for k in KINDS}
    result = asyncio.run(orchestrate(args))
    result["targets"] = verdict(result)
    print(json.dumps(result, default=str), flush=True)
    print(table(result))
    sys.exit(0 if all(result["targets"].values()) else 1)


if __name__ == "__main__":
    main()
