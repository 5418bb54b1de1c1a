"""Teams presence benchmark: subscription and polling against the emulator, end to end.

    .venv/bin/python bench/presence.py [--case one|many|both] [--users 10000] [--pbxes 100]
        [--users-per-pbx 100] [--samples 40] [--database postgresql|sqlite]

`one`: one PBX with `--users` enabled users (650 subscribed, the rest polled every 30 s).
`many`: `--pbxes` PBXes, each its own Entra tenant and app, with `--users-per-pbx` each.
The emulator runs in another process and delivers Graph's notifications over HTTPS to the
service, served here by uvicorn with the presence loop running as in production (the run worker
is off: user sync runs are executed here once, to create the extensions). Measured:
- bulk requests per polling round and PBX (getPresencesByUserId, from the emulator's log);
- change-to-status latency: from the emulator's presence change to the extension's new Teams
  availability in the database, p50/p99, for subscribed and for polled users;
- webhook latency meanwhile: genuine presence notifications POSTed to /webhooks/graph.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import trustme
from harness import ADMIN, ROOT, database, start_emulator
from sqlalchemy import insert, select

sys.path.insert(0, str(ROOT))

from app import migrate
from app.db import create_engine, session_scope, sessionmaker, table_of, utcnow
from app.demo import consent_fields
from app.directory.models import Extension, ExtensionPresence, TeamsPresenceSetting
from app.directory.schemas import DEFAULT_TEAMS_MAPPING
from app.presence.models import PresenceState

CYCLE = ["Busy", "Away", "DoNotDisturb", "BeRightBack", "Available"]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


class Bench:
    def __init__(self, demo: dict[str, Any], workdir: Path, db_kind: str) -> None:
        self.demo = demo
        self.workdir = workdir
        self.db_kind = db_kind
        self.ctx = ssl.create_default_context(cafile=demo["ca_path"])
        self.control = httpx.AsyncClient(
            base_url=f"{demo['base_url']}/_emulator", verify=self.ctx, timeout=120
        )
        self.pbxes: list[dict[str, Any]] = []  # {pbx, headers, tenant_id}
        self.health: list[float] = []

    async def serve(self) -> None:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        paths = {n: str(self.workdir / f"svc-{n}.pem") for n in ("ca", "cert", "key")}
        ca.cert_pem.write_to_path(paths["ca"])
        cert.cert_chain_pems[0].write_to_path(paths["cert"])
        cert.private_key_pem.write_to_path(paths["key"])
        await self.control.put("/notifications/settings", json={"notification_ca": paths["ca"]})
        self.url, self.drop = await database(self.db_kind, self.workdir)
        await asyncio.to_thread(migrate.upgrade, self.url)
        self.engine = create_engine(self.url)
        self.maker = sessionmaker(self.engine)
        port = 18443 + random.randint(0, 500)
        self.public = f"https://127.0.0.1:{port}"
        env = {
            **os.environ,
            "DATABASE_URL": self.url,
            "SECRET_KEY": "bench-secret",
            "ADMIN_API_KEY": ADMIN,
            "PUBLIC_BASE_URL": self.public,
            "LOGIN_BASE_URL": self.demo["base_url"],
            "GRAPH_BASE_URL": f"{self.demo['base_url']}/v1.0",
            "CA_BUNDLE": self.demo["ca_path"],
            "SCHEDULER_ENABLED": "false",
            "LOG_LEVEL": "WARNING",
        }
        # The service in a process of its own, as deployed: its worker runs the initial user
        # syncs, its presence loop runs beside it.
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--ssl-certfile",
                paths["cert"],
                "--ssl-keyfile",
                paths["key"],
                "--log-level",
                "warning",
                "--timeout-graceful-shutdown",
                "1",
            ],
            env=env,
            cwd=ROOT,
        )
        svc_ctx = ssl.create_default_context(cafile=paths["ca"])
        self.api = httpx.AsyncClient(base_url=self.public, verify=svc_ctx, timeout=600)
        for _ in range(300):
            try:
                if (await self.api.get("/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
        raise SystemExit("the service did not start")

    async def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        await self.api.aclose()
        await self.engine.dispose()
        await self.control.put("/notifications/settings", json={"notification_ca": None})
        await self.control.aclose()
        if self.drop:
            await self.drop()

    async def tenant(self, users: int, seed: int) -> dict[str, Any]:
        suffix = uuid.uuid4().hex[:8]
        body = {
            "id": str(uuid.uuid4()),
            "display_name": f"Bench {suffix}",
            "domain": f"bench{suffix}.onmicrosoft.com",
            "users": users,
            "groups": 0,
            "seed": seed,
        }
        summary = (await self.control.post("/tenants", json=body)).raise_for_status().json()
        app = (
            (
                await self.control.post(
                    f"/tenants/{summary['id']}/apps",
                    json={
                        "display_name": "PBX",
                        "redirect_uris": [f"{self.public}/integration/callback"],
                    },
                )
            )
            .raise_for_status()
            .json()
        )
        await self.control.put(
            f"/tenants/{summary['id']}/settings",
            json={"auto_consent_user": summary["admin"]["upn"]},
        )
        return {
            "tenant_id": summary["id"],
            "client_id": app["app_id"],
            "client_secret": app["secret"]["value"],
        }

    async def pbx(self, tenant: dict[str, Any]) -> None:
        """A PBX connected to `tenant`, its users synced, every extension following Teams."""
        created = await self.api.post(
            "/api/v1/pbxes",
            json={"name": f"pbx-{uuid.uuid4().hex[:8]}", "max_extensions": 100_000},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        pbx = created.raise_for_status().json()
        h = {"Authorization": f"Bearer {pbx['api_key']}"}
        put = (await self.api.put("/api/v1/integration", json=tenant, headers=h)).json()
        fields = await consent_fields(put["authorization_url"], self.demo["ca_path"])
        assert (await self.api.post("/integration/callback", data=fields)).status_code == 200
        put = await self.api.put("/api/v1/integration/user-sync", json={"enabled": True}, headers=h)
        run_id = put.raise_for_status().json()["initial_run_id"]
        for _ in range(6000):
            run = (await self.api.get(f"/api/v1/sync-runs/{run_id}", headers=h)).json()
            if run["status"] in ("succeeded", "partial"):
                break
            assert run["status"] in ("queued", "running"), run
            await asyncio.sleep(0.1)
        await self.api.put("/api/v1/integration/presence-sync", json={"enabled": True}, headers=h)
        async with session_scope(self.maker) as session:
            ids = (
                await session.execute(
                    select(Extension.id).where(
                        Extension.pbx_id == pbx["id"], Extension.managed_by == "entra"
                    )
                )
            ).scalars()
            now = utcnow()
            rows = [
                {
                    "extension_id": i,
                    "enabled": True,
                    "mapping": dict(DEFAULT_TEAMS_MAPPING),
                    "updated_at": now,
                }
                for i in ids
            ]
            # The users turn it on in Linkus (PUT /api/v1/me/teams-presence): seeded in bulk here.
            await session.execute(insert(table_of(TeamsPresenceSetting)), rows)
        self.pbxes.append({"pbx": pbx, "headers": h, "tenant_id": tenant["tenant_id"]})

    async def extensions(self, pbx_id: str) -> dict[str, str]:
        async with session_scope(self.maker) as session:
            rows = await session.execute(
                select(Extension.entra_id, Extension.id).where(
                    Extension.pbx_id == pbx_id, Extension.managed_by == "entra"
                )
            )
            return {a: b for a, b in rows.all()}

    async def states(self) -> dict[str, PresenceState]:
        async with session_scope(self.maker) as session:
            return {s.pbx_id: s for s in (await session.execute(select(PresenceState))).scalars()}

    async def wait_settled(self, timeout: float = 300) -> None:
        """Every PBX has caught up (and holds its subscription)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = await self.states()
            if len(states) == len(self.pbxes) and all(
                not s.catchup_needed and s.subscription_id for s in states.values()
            ):
                return
            await asyncio.sleep(0.5)
        raise SystemExit("the presence loop did not settle")

    async def polling_round(self) -> dict[str, list[int]]:
        """The bulk requests of one polling round, per tenant: the ids of each. PBXes whose
        users are all subscribed poll nothing: then the window is one polling period."""
        states = await self.states()
        pbx_ids = []
        for p in self.pbxes:
            n = len(await self.extensions(p["pbx"]["id"]))
            if n > len(states[p["pbx"]["id"]].subscribed_ids):
                pbx_ids.append(p["pbx"]["id"])
        if not pbx_ids:
            await self.control.delete("/presence/reads")
            await asyncio.sleep(31)
            return self._reads_per_tenant(
                (await self.control.get("/presence/reads")).json()["value"]
            )
        before = {k: v.last_poll_at for k, v in states.items()}

        # Wait for the first round to start after now, clear, then for the next one to end.
        async def next_round(since: dict[str, Any]) -> dict[str, Any]:
            while True:
                now = {k: v.last_poll_at for k, v in (await self.states()).items()}
                if all(now[p] != since[p] for p in pbx_ids):
                    return now
                await asyncio.sleep(0.2)

        first = await next_round(before)
        await asyncio.sleep(1.0)
        await self.control.delete("/presence/reads")
        await next_round(first)
        await asyncio.sleep(1.5)
        return self._reads_per_tenant((await self.control.get("/presence/reads")).json()["value"])

    def _reads_per_tenant(self, reads: list[dict[str, Any]]) -> dict[str, list[int]]:
        per: dict[str, list[int]] = {p["tenant_id"]: [] for p in self.pbxes}
        for r in reads:
            per.setdefault(r["tenant_id"], []).append(len(r["ids"]))
        return per

    async def latency(
        self, targets: list[tuple[dict[str, Any], str, str]], spacing: float
    ) -> list[float]:
        """Change each (pbx, user, extension) in Teams `spacing` seconds apart; seconds until
        each extension shows the new availability."""
        pending: dict[str, tuple[str, float]] = {}
        done: list[float] = []

        async def watch() -> None:
            while pending or not started.is_set():
                if not pending:
                    await asyncio.sleep(0.02)
                    continue
                if pending:
                    async with session_scope(self.maker) as session:
                        rows = await session.execute(
                            select(
                                ExtensionPresence.extension_id, ExtensionPresence.teams_availability
                            ).where(ExtensionPresence.extension_id.in_(list(pending)))
                        )
                        seen = time.perf_counter()
                        for ext_id, availability in rows.all():
                            want = pending.get(ext_id)
                            if want is not None and availability == want[0]:
                                done.append(seen - want[1])
                                del pending[ext_id]
                await asyncio.sleep(0.02)

        started = asyncio.Event()
        watcher = asyncio.create_task(watch())
        for i, (p, user, ext_id) in enumerate(targets):
            availability = CYCLE[i % (len(CYCLE) - 1)]
            async with session_scope(self.maker) as session:
                current = await session.get(ExtensionPresence, ext_id)
            if current is not None and current.teams_availability == availability:
                availability = "Offline"
            at = time.perf_counter()
            pending[ext_id] = (availability, at)
            await self.control.put(
                f"/tenants/{p['tenant_id']}/users/{user}/presence",
                json={"availability": availability, "activity": availability},
            )
            await asyncio.sleep(spacing)
        started.set()
        try:
            await asyncio.wait_for(watcher, 120)
        except TimeoutError:
            print(f"  {len(pending)} changes never arrived", file=sys.stderr)
        return done

    async def webhook_load(self, stop: asyncio.Event, out: list[float]) -> None:
        """Genuine presence notifications for the first PBX, 5 POSTs a second."""
        p = self.pbxes[0]
        subs = (
            await self.control.get("/subscriptions", params={"tenant_id": p["tenant_id"]})
        ).json()["value"]
        sub = next(s for s in subs if "presences" in s["resource"])
        users = list(await self.extensions(p["pbx"]["id"]))[:50]
        while not stop.is_set():
            uid = random.choice(users)
            item = {
                "subscriptionId": sub["id"],
                "clientState": sub["clientState"],
                "changeType": "updated",
                "resource": f"communications/presences/{uid}",
                "tenantId": p["tenant_id"],
            }
            started = time.perf_counter()
            resp = await self.api.post("/webhooks/graph", json={"value": [item]})
            out.append(time.perf_counter() - started)
            assert resp.status_code == 202, resp.status_code
            started = time.perf_counter()
            await self.api.get("/healthz")
            self.health.append(time.perf_counter() - started)
            await asyncio.sleep(0.2)


def note(message: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


async def measure(bench: Bench, label: str, samples: int) -> dict[str, Any]:
    await bench.wait_settled()
    note("settled; timing a polling round")
    rounds = await bench.polling_round()
    note("subscribed latency")
    states = await bench.states()
    sub_targets: list[tuple[dict[str, Any], str, str]] = []
    poll_targets: list[tuple[dict[str, Any], str, str]] = []
    rng = random.Random(7)
    for p in bench.pbxes:
        exts = await bench.extensions(p["pbx"]["id"])
        subscribed = set(states[p["pbx"]["id"]].subscribed_ids)
        sub_targets += [(p, u, exts[u]) for u in subscribed if u in exts]
        poll_targets += [(p, u, exts[u]) for u in exts if u not in subscribed]
    rng.shuffle(sub_targets)
    rng.shuffle(poll_targets)
    stop = asyncio.Event()
    hooks: list[float] = []
    load = asyncio.create_task(bench.webhook_load(stop, hooks))
    sub_lat = await bench.latency(sub_targets[:samples], spacing=0.5)
    note("polled latency")
    poll_lat = (
        await bench.latency(poll_targets[:samples], spacing=30.0 / max(samples, 1))
        if poll_targets
        else []
    )
    stop.set()
    await load
    sizes = {p["pbx"]["id"]: len(await bench.extensions(p["pbx"]["id"])) for p in bench.pbxes}
    n_users = sum(sizes.values())
    per_round = [len(v) for v in rounds.values()]
    polled_per_pbx = [n - len(states[k].subscribed_ids) for k, n in sizes.items()]
    return {
        "case": label,
        "database": bench.db_kind,
        "pbxes": len(bench.pbxes),
        "enabled_users": n_users,
        "subscribed_users": sum(len(s.subscribed_ids) for s in states.values()),
        "bulk_requests_per_round_max_per_pbx": max(per_round) if per_round else 0,
        "bulk_requests_per_round_total": sum(per_round),
        "round_request_sizes": sorted(n for v in rounds.values() for n in v)[:20],
        "bound_ceil_polled_over_650_max": max(math.ceil(n / 650) for n in polled_per_pbx),
        "subscribed_p50_s": round(pct(sub_lat, 0.5), 3),
        "subscribed_p99_s": round(pct(sub_lat, 0.99), 3),
        "subscribed_samples": len(sub_lat),
        "polled_p50_s": round(pct(poll_lat, 0.5), 2) if poll_lat else None,
        "polled_p99_s": round(pct(poll_lat, 0.99), 2) if poll_lat else None,
        "polled_samples": len(poll_lat),
        "webhook_p50_ms": round(1000 * pct(hooks, 0.5), 1),
        "webhook_p99_ms": round(1000 * pct(hooks, 0.99), 1),
        "webhook_posts": len(hooks),
        "healthz_p50_ms": round(1000 * pct(bench.health, 0.5), 1),
    }


async def run_case(
    case: str, args: argparse.Namespace, demo: dict[str, Any], workdir: Path
) -> dict[str, Any]:
    bench = Bench(demo, workdir, args.database)
    await bench.serve()
    try:
        started = time.perf_counter()
        if case == "one":
            await bench.pbx(await bench.tenant(args.users, seed=11))
        else:
            # Ten set up at a time: each is a tenant, a consent and an initial user sync.
            for start in range(0, args.pbxes, 10):
                tenants = [
                    await bench.tenant(args.users_per_pbx, seed=100 + i)
                    for i in range(start, min(start + 10, args.pbxes))
                ]
                await asyncio.gather(*(bench.pbx(t) for t in tenants))
        setup_s = time.perf_counter() - started
        note(f"set up in {setup_s:.1f} s")
        result = await measure(bench, case, args.samples)
        result["setup_s"] = round(setup_s, 1)
        return result
    finally:
        await bench.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--case", choices=["one", "many", "both"], default="both")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--pbxes", type=int, default=100)
    parser.add_argument("--users-per-pbx", type=int, default=100)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--port", type=int, default=19443)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        proc, demo = start_emulator(workdir / "emulator", args.port, "--users", "0", quiet=True)
        try:
            for case in ["one", "many"] if args.case == "both" else [args.case]:
                print(json.dumps(await run_case(case, args, demo, workdir)), flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    asyncio.run(main())
