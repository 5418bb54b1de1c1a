"""Webhook benchmark: sustained Graph notification POSTs from a second process on loopback.

    .venv/bin/python bench/webhooks.py [--notifications 20000] [--concurrency 16] [--batch 1]

One service process (`pbx-entra serve`, PostgreSQL, its worker on) receives; a second process
sends `--notifications` items in POSTs of `--batch` items with `--concurrency` in flight, and
measures each POST's latency. Then it waits until the service has counted every accepted item
(none lost). Bounded in count and time; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import migrate
from app.db import create_engine, session_scope, sessionmaker, utcnow
from app.notifications.models import GraphSubscription, PendingChanges
from app.notifications.webhooks import client_state_hash
from app.tenants.models import Pbx

PG_ADMIN = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
STATE = "bench-client-state"


async def sender(url: str, total: int, batch: int, concurrency: int) -> dict[str, float]:
    """Keep-alive HTTP/1.1 connections on asyncio streams: a load generator light enough not to
    be the bottleneck on a 2-core machine (httpx costs about as much per request as the server)."""
    parsed = httpx.URL(url)
    host, port, path = parsed.host, parsed.port or 80, parsed.raw_path.decode()
    latencies: list[float] = []
    sent = 0
    deadline = time.monotonic() + 300

    def request(n: int) -> bytes:
        items = ",".join(
            json.dumps(
                {
                    "subscriptionId": "bench-sub",
                    "clientState": STATE,
                    "changeType": "updated",
                    "resource": f"Users/{uuid.uuid4()}",
                    "tenantId": "t",
                }
            )
            for _ in range(n)
        )
        body = ('{"value": [' + items + "]}").encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        return head + body

    async def connection() -> None:
        nonlocal sent
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.monotonic() < deadline and sent < total:
                n = min(batch, total - sent)
                sent += n
                payload = request(n)
                t = time.perf_counter()
                writer.write(payload)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                latencies.append(time.perf_counter() - t)
                assert status == 202, head
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "notifications": sent,
        "posts": len(latencies),
        "seconds": round(elapsed, 2),
        "notifications_per_s": round(sent / elapsed),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
        "max_ms": round(latencies[-1] * 1000, 1),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--notifications", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--send", help=argparse.SUPPRESS)  # the sending process's own mode
    args = parser.parse_args()
    if args.send:
        print(json.dumps(await sender(args.send, args.notifications, args.batch, args.concurrency)))
        return

    name = f"pbx_entra_bench_{uuid.uuid4().hex[:8]}"
    plain = make_url(PG_ADMIN).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(plain)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    url = make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
    service = None
    try:
        await asyncio.to_thread(migrate.upgrade, url)
        engine = create_engine(url)
        maker = sessionmaker(engine)
        async with session_scope(maker) as session:
            pbx = Pbx(name="bench", timezone="UTC", max_extensions=1000, max_extension_groups=63)
            session.add(pbx)
            await session.flush()
            session.add(
                GraphSubscription(
                    id="bench-sub",
                    pbx_id=pbx.id,
                    resource="users",
                    change_type="updated,deleted",
                    client_state_hash=client_state_hash(STATE),
                    expires_at=utcnow() + timedelta(days=1),
                )
            )
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "SECRET_KEY": "bench",
            "LOG_LEVEL": "WARNING",
            "CHANGE_BATCH_SIZE": str(10**9),
            "CHANGE_DELAY_SECONDS": "86400",
            "SCHEDULER_ENABLED": "false",
        }
        service = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--port", str(args.port), "--no-migrate"],
            env=env,
            cwd=ROOT,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{args.port}"
        for _ in range(200):
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--send",
                f"{base}/webhooks/graph",
                "--notifications",
                str(args.notifications),
                "--batch",
                str(args.batch),
                "--concurrency",
                str(args.concurrency),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        # None lost: every accepted item is counted by the service's worker.
        t = time.perf_counter()
        counted = 0
        while time.perf_counter() - t < 120:
            async with session_scope(maker) as session:
                counted = int(
                    (
                        await session.execute(
                            select(func.coalesce(func.sum(PendingChanges.count), 0))
                        )
                    ).scalar_one()
                )
            if counted >= result["notifications"]:
                break
            await asyncio.sleep(0.2)
        result.update(
            counted=counted,
            lost=result["notifications"] - counted,
            batch=args.batch,
            concurrency=args.concurrency,
            seconds_to_count=round(time.perf_counter() - t, 2),
        )
        print(json.dumps(result))
        await engine.dispose()
    finally:
        if service is not None:
            service.terminate()
            service.wait(timeout=30)
        conn = await asyncpg.connect(plain)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
