"""Measure how fast the emulator pages `/v1.0/users?$top=999` over a generated tenant.

    .venv/bin/python -m emulator.measure [--users 100000] [--rounds 3] [--select id,displayName]

Starts an emulator in this process (HTTPS on loopback, its own thread), gets an app-only token
through the client-credentials grant and follows `@odata.nextLink` to the end, with one
keep-alive connection, like a sync run does.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from emulator.testing import run_emulator


def page_through(client: httpx.Client, token: str, select: str | None) -> tuple[int, int, float]:
    params = {"$top": "999"}
    if select:
        params["$select"] = select
    url: str | None = "/v1.0/users"
    pages = users = 0
    headers = {"Authorization": f"Bearer {token}"}
    started = time.perf_counter()
    first = True
    while url:
        response = client.get(url, params=params if first else None, headers=headers)
        response.raise_for_status()
        body = response.json()
        pages += 1
        users += len(body["value"])
        url = body.get("@odata.nextLink")
        first = False
    return pages, users, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m emulator.measure")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--select", default=None, help="e.g. id,displayName,mail")
    args = parser.parse_args()

    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory() as state_dir,
        run_emulator(Path(state_dir), users=args.users, groups=args.groups) as emu,
        emu.client(timeout=60) as client,
    ):
        print(f"emulator up with {args.users} users in {time.perf_counter() - started:.1f} s")
        tenant_id = next(iter(emu.state.tenants))
        app = client.post(f"/_emulator/tenants/{tenant_id}/apps", json={}).json()
        token = client.post(
            f"/{tenant_id}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": app["app_id"],
                "client_secret": app["secret"]["value"],
                "scope": "https://graph.microsoft.com/.default",
            },
        ).json()["access_token"]
        rates = []
        for round_number in range(1, args.rounds + 1):
            pages, users, elapsed = page_through(client, token, args.select)
            rates.append(pages / elapsed)
            print(
                f"round {round_number}: {pages} pages, {users} users in {elapsed:.2f} s: "
                f"{pages / elapsed:.1f} pages/s, {users / elapsed:,.0f} users/s"
            )
        print(f"median: {statistics.median(rates):.1f} pages/s")


if __name__ == "__main__":
    main()
