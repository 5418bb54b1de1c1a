"""Linkus sign-in benchmark: logins per second through the whole redirect dance, and /sso/token.

    .venv/bin/python bench/sso.py [--users 200] [--logins 400] [--concurrency 8]

One service process (this one, PostgreSQL, requests through the ASGI transport) and the emulator
in another process with its demo tenant. The default PBX is connected (MSAL, consent) and its
users synced; SSO is turned on. Each login is what a browser without a Microsoft session does:
GET /sso/{pbx}/login → the tenant's authorize page → POST the credentials → GET /sso/callback
(the service redeems the code and validates the ID token) → POST /sso/token. Every user first
consents once (not measured). Bounded in count; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import html
import json
import os
import pstats
import re
import resource
import shutil
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from harness import peak_rss_mb, service, start_emulator

RETURN_URL = "https://linkus.example.com/web/"
_CTX = re.compile(r"name='ctx' value='([^']+)'")


def _query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


class Dance:
    def __init__(self, api: httpx.AsyncClient, pbx_id: str, demo: dict[str, Any]) -> None:
        self.api = api
        self.pbx_id = pbx_id
        self.base = demo["base_url"]
        self.tid = demo["tenant_id"]
        self.ssl = ssl.create_default_context(cafile=demo["ca_path"])
        self.timings: dict[str, list[float]] = {"login": [], "callback": [], "token": []}

    async def _timed(self, step: str, call: Any) -> httpx.Response:
        started = time.perf_counter()
        resp: httpx.Response = await call
        self.timings[step].append(time.perf_counter() - started)
        return resp

    async def sign_in(self, upn: str, password: str, consent: bool = False) -> str:
        """One login end to end; the extension number the token was issued for."""
        start = await self._timed(
            "login",
            self.api.get(
                f"/sso/{self.pbx_id}/login", params={"client": "web", "return_url": RETURN_URL}
            ),
        )
        assert start.status_code == 302, start.text
        # A browser without a Microsoft session: a fresh cookie jar each time.
        async with httpx.AsyncClient(verify=self.ssl, trust_env=False, timeout=60) as browser:
            page = await browser.get(start.headers["location"])
            ctx = _CTX.search(page.text)
            assert ctx, page.text[:200]
            form = {"ctx": html.unescape(ctx.group(1)), "loginfmt": upn, "passwd": password}
            answer = await browser.post(f"{self.base}/{self.tid}/login", data=form)
            if answer.status_code == 200 and consent:
                ctx = _CTX.search(answer.text)
                assert ctx, answer.text[:200]
                answer = await browser.post(
                    f"{self.base}/{self.tid}/Consent/Set",
                    data={"ctx": html.unescape(ctx.group(1)), "action": "accept"},
                )
        assert answer.status_code == 302, answer.text[:300]
        params = _query(answer.headers["location"])
        back = await self._timed("callback", self.api.get("/sso/callback", params=params))
        landing = _query(back.headers["location"])
        assert "sso_code" in landing, landing
        token = await self._timed(
            "token", self.api.post("/sso/token", json={"code": landing["sso_code"]})
        )
        assert token.status_code == 200, token.text
        return str(token.json()["extension"]["number"])


async def run(args: argparse.Namespace, demo: dict[str, Any], workdir: Path) -> dict[str, Any]:
    ctx = ssl.create_default_context(cafile=demo["ca_path"])
    tid = demo["tenant_id"]
    ctl = httpx.Client(base_url=f"{demo['base_url']}/_emulator/tenants/{tid}", verify=ctx)
    async with service("postgresql", demo, workdir) as svc:
        api, h = svc.api, svc.headers
        await api.put("/api/v1/integration/user-sync", json={"enabled": True}, headers=h)
        await svc.execute_next()
        body = {"enabled": True, "allowed_return_urls": [RETURN_URL]}
        assert (await api.put("/api/v1/integration/sso", json=body, headers=h)).status_code == 200
        ctl.put("/settings", json={"auto_consent_user": None}).raise_for_status()
        users = {u["id"]: u for u in ctl.get("/users", params={"top": 100_000}).json()["value"]}
        page = (await api.get("/api/v1/extensions", params={"limit": 1000}, headers=h)).json()
        people = [
            (users[e["entra_user_id"]]["userPrincipalName"], e["number"])
            for e in page["items"]
            if e["entra_user_id"] in users
        ]
        dance = Dance(api, svc.pbx["id"], demo)
        for upn, number in people:  # each user consents once (not measured)
            assert await dance.sign_in(upn, "Passw0rd!", consent=True) == number
        dance.timings = {k: [] for k in dance.timings}
        queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        for i in range(args.logins):
            queue.put_nowait(people[i % len(people)])

        async def browser() -> None:
            while not queue.empty():
                upn, number = queue.get_nowait()
                assert await dance.sign_in(upn, "Passw0rd!") == number

        started = time.perf_counter()
        cpu0, emu0 = _cpu_self(), _cpu_of(args.emulator_pid)
        profile = cProfile.Profile() if args.profile else None
        if profile:
            profile.enable()
        await asyncio.gather(*(browser() for _ in range(args.concurrency)))
        if profile:
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(40)
        wall = time.perf_counter() - started
        cpu, emu = _cpu_self() - cpu0, _cpu_of(args.emulator_pid) - emu0
        t = dance.timings
        result: dict[str, Any] = {
            "db": "postgresql",
            "users": len(people),
            "logins": args.logins,
            "concurrency": args.concurrency,
            "wall_s": round(wall, 2),
            "logins_per_s": round(args.logins / wall, 1),
            "token_p50_ms": round(_pct(t["token"], 0.5), 1),
            "token_p99_ms": round(_pct(t["token"], 0.99), 1),
            "callback_p50_ms": round(_pct(t["callback"], 0.5), 1),
            "callback_p99_ms": round(_pct(t["callback"], 0.99), 1),
            "login_p50_ms": round(_pct(t["login"], 0.5), 1),
            "login_p99_ms": round(_pct(t["login"], 0.99), 1),
            "service_share": round(sum(sum(v) for v in t.values()) / (wall * args.concurrency), 2),
            # CPU seconds per login: this process (service and the bench's HTTP clients) and
            # the emulator; unlike latencies, they hardly depend on what else the machine runs.
            "cpu_ms_per_login": round(cpu / args.logins * 1000, 1),
            "emulator_cpu_ms_per_login": round(emu / args.logins * 1000, 1),
            "peak_rss_mb": round(peak_rss_mb()),
        }
        # /sso/token alone: codes made first, then exchanged back to back.
        codes = []
        for upn, _ in people[: min(len(people), 100)]:
            start = await api.get(
                f"/sso/{svc.pbx['id']}/login", params={"client": "web", "return_url": RETURN_URL}
            )
            ctl.put("/settings", json={"auto_consent_user": upn}).raise_for_status()
            async with httpx.AsyncClient(verify=ctx, trust_env=False) as b:
                answer = await b.get(start.headers["location"])
            back = await api.get("/sso/callback", params=_query(answer.headers["location"]))
            codes.append(_query(back.headers["location"])["sso_code"])
        base = []
        for _ in range(len(codes)):
            began = time.perf_counter()
            assert (await api.get("/api/v1/pbx", headers=h)).status_code == 200
            base.append(time.perf_counter() - began)
        lat = []
        for code in codes:
            began = time.perf_counter()
            resp = await api.post("/sso/token", json={"code": code})
            lat.append(time.perf_counter() - began)
            assert resp.status_code == 200
        result.update(
            pbx_route_p50_ms=round(statistics.median(base) * 1000, 1),
            token_alone_n=len(lat),
            token_alone_p50_ms=round(statistics.median(lat) * 1000, 1),
            token_alone_p99_ms=round(_pct(lat, 0.99), 1),
        )
    ctl.close()
    print(json.dumps(result), flush=True)
    return result


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--logins", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--port", type=int, default=18446)
    parser.add_argument("--profile", action="store_true", help="profile the measured logins")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="pbx-entra-bench-"))
    proc, demo = start_emulator(
        workdir / "emulator", args.port, "--users", str(args.users), "--groups", "0", quiet=True
    )
    args.emulator_pid = proc.pid
    try:
        await run(args, demo, workdir)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
