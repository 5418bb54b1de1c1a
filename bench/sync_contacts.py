"""Contacts-sync benchmark against the emulator: personal contacts of many synced users and a few
large shared mailboxes, a full run, a quiet incremental run and one after 100 contact changes,
into PostgreSQL and SQLite.

    .venv/bin/python bench/sync_contacts.py [--users 1000] [--per-user 200] [--mailboxes 5]
        [--per-mailbox 2000] [--databases postgresql sqlite] [--no-delta]

Users are synced first (personal contacts need an extension); each of `--users` synced users gets
`--per-user` generated contacts in a Contacts folder shared with the authorization account, and
`--mailboxes` shared mailboxes of `--per-mailbox` contacts each have it as a member (the
generator's contacts include some without a name or a phone: they are failures, as the guide
says). `--no-delta` makes Graph refuse the delegated delta on shared folders, so incremental runs
list every folder and compare change keys. Each database runs in a process of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import peak_rss_mb, service, start_emulator

FOLDER_READ = re.compile(r"/users/([^/]+)/contact")


def _batches(ctl: httpx.Client, tid: str, since: int) -> tuple[int, int, int]:
    """($batch requests, sub-requests, folders tried) in the emulator's log since `since`; a
    folder tried is a mailbox whose contacts were asked for (delta, listing or delta link)."""
    log = ctl.get("/requests", params={"since": since, "tenant_id": tid}).json()["value"]
    posts = sum(1 for r in log if r["path"].endswith("/$batch"))
    subs = [r for r in log if r.get("batch")]
    folders = {m.group(1) for r in subs if (m := FOLDER_READ.search(r["path"]))}
    return posts, len(subs), len(folders)


def _last_seq(ctl: httpx.Client) -> int:
    """Empty the emulator's request log (sequence numbers keep growing): count from 0."""
    ctl.delete("/requests").raise_for_status()
    return 0


def _phases(executor: Any) -> dict[str, float]:
    return {
        k.removeprefix("contacts_"): round(v, 2)
        for k, v in executor.timings.items()
        if k.startswith("contacts_")
    }


def _change_100(ctl: httpx.Client, tid: str, owners: list[str]) -> dict[str, int]:
    """100 contact changes over 20 users: per user 3 updates, 1 deletion, 1 creation."""
    done = {"updated": 0, "deleted": 0, "created": 0}
    for owner in owners[:20]:
        folders = ctl.get(f"/tenants/{tid}/users/{owner}/contact-folders").json()["value"]
        folder = next(f for f in folders if f["isDefault"])
        items = ctl.get(f"/tenants/{tid}/contact-folders/{folder['id']}/contacts").json()["value"]
        for c in items[:3]:
            ctl.patch(
                f"/tenants/{tid}/contacts/{c['id']}",
                json={"givenName": "Changed", "mobilePhone": "+1 425 555 0142"},
            ).raise_for_status()
            done["updated"] += 1
        ctl.delete(f"/tenants/{tid}/contacts/{items[3]['id']}").raise_for_status()
        done["deleted"] += 1
        ctl.post(
            f"/tenants/{tid}/contact-folders/{folder['id']}/contacts",
            json={"givenName": "New", "surname": "Contact", "businessPhones": ["+1 206 555 0100"]},
        ).raise_for_status()
        done["created"] += 1
    return done


async def one(kind: str, args: argparse.Namespace, demo: dict[str, Any], workdir: Path) -> None:
    ctx = ssl.create_default_context(cafile=demo["ca_path"])
    ctl = httpx.Client(base_url=f"{demo['base_url']}/_emulator", verify=ctx, timeout=300)
    tid = demo["tenant_id"]
    try:
        async with service(kind, demo, workdir, max_extensions=100_000) as svc:
            api, h, execute = svc.api, svc.headers, svc.execute_next
            await api.put("/api/v1/integration/user-sync", json={"enabled": True}, headers=h)
            await execute()
            synced: list[dict[str, Any]] = []
            cursor = None
            while True:
                params = {
                    "managed_by": "entra",
                    "limit": 1000,
                    **({"cursor": cursor} if cursor else {}),
                }
                page = (await api.get("/api/v1/extensions", params=params, headers=h)).json()
                synced += page["items"]
                cursor = page["next_cursor"]
                if not cursor:
                    break
            admin = next(
                u["id"]
                for u in ctl.get(f"/tenants/{tid}/users", params={"top": 5000}).json()["value"]
                if u.get("isAdmin")
            )
            owners = sorted(e["entra_user_id"] for e in synced if e["entra_user_id"])
            owners = [o for o in owners if o != admin][: args.users]
            loaded = ctl.post(
                f"/tenants/{tid}/contacts-load",
                json={
                    "owners": owners,
                    "per_owner": args.per_user,
                    "share_with": admin,
                    "mailboxes": args.mailboxes,
                    "per_mailbox": args.per_mailbox,
                    "member": admin,
                },
            ).json()
            if args.no_delta:
                ctl.put(f"/tenants/{tid}/graph-settings", json={"shared_contacts_delta": False})
            rules = {
                "enabled": True,
                "personal": {"enabled": True, "range": {"mode": "all"}},
                "shared": {
                    "enabled": True,
                    "mode": "specific",
                    "mailboxes": [{"mailbox_id": m} for m in loaded["mailboxes"]],
                },
            }
            seq = _last_seq(ctl)
            resp = await api.put("/api/v1/integration/contacts-sync", json=rules, headers=h)
            assert resp.status_code == 200, resp.text
            full, full_wall = await execute()
            counts = full.report.counts["contacts"]
            posts, subs, tried = _batches(ctl, tid, seq)
            result: dict[str, Any] = {
                "db": kind,
                "delta": not args.no_delta,
                "users": len(owners),
                "folders": len(owners) + args.mailboxes,
                "folders_tried": tried,
                "contacts_created": counts["created"],
                "contacts_failed": counts["failed"],
                "wall_s": round(full_wall, 2),
                "fetch_s": round(full.timings["contacts_fetch"], 2),
                "plan_s": round(full.timings["contacts_plan"], 2),
                "apply_s": round(full.timings["contacts_apply"], 2),
                "graph_requests": full.graph.stats.requests,
                "batch_posts": posts,
                "batch_subrequests": subs,
                "peak_rss_mb": round(peak_rss_mb()),
            }
            seq = _last_seq(ctl)
            await api.post("/api/v1/integration/sync", json={"scopes": ["contacts"]}, headers=h)
            quiet, quiet_wall = await execute()
            posts, _, tried = _batches(ctl, tid, seq)
            result.update(
                quiet_wall_s=round(quiet_wall, 2),
                quiet_phases=_phases(quiet),
                quiet_graph_requests=quiet.graph.stats.requests,
                quiet_batch_posts=posts,
                quiet_folders_tried=tried,
                quiet_posts_allowed=math.ceil(tried / 20),
                quiet_written=sum(
                    quiet.report.counts["contacts"][k] for k in ("created", "updated", "deleted")
                ),
            )
            changed = _change_100(ctl, tid, owners)
            seq = _last_seq(ctl)
            await api.post("/api/v1/integration/sync", json={"scopes": ["contacts"]}, headers=h)
            inc, inc_wall = await execute()
            posts, _, tried = _batches(ctl, tid, seq)
            c = inc.report.counts["contacts"]
            result.update(
                changes=changed,
                inc_wall_s=round(inc_wall, 2),
                inc_phases=_phases(inc),
                inc_graph_requests=inc.graph.stats.requests,
                inc_batch_posts=posts,
                inc_folders_tried=tried,
                inc_counts={k: c[k] for k in ("created", "updated", "deleted", "unchanged")},
                peak_rss_mb=round(peak_rss_mb()),
            )
            print(json.dumps(result), flush=True)
    finally:
        ctl.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--per-user", type=int, default=200)
    parser.add_argument("--mailboxes", type=int, default=5)
    parser.add_argument("--per-mailbox", type=int, default=2000)
    parser.add_argument("--databases", nargs="+", default=["postgresql", "sqlite"])
    parser.add_argument("--no-delta", action="store_true")
    parser.add_argument("--port", type=int, default=18445)
    parser.add_argument("--one", action="store_true", help="one database, in this process")
    args = parser.parse_args()
    if not args.one:
        for kind in args.databases:
            cmd = [sys.executable, __file__, "--one", "--databases", kind, "--port", str(args.port)]
            cmd += ["--users", str(args.users), "--per-user", str(args.per_user)]
            cmd += ["--mailboxes", str(args.mailboxes), "--per-mailbox", str(args.per_mailbox)]
            cmd += ["--no-delta"] if args.no_delta else []
            subprocess.run(cmd, check=True)
        return
    workdir = Path(tempfile.mkdtemp(prefix="pbx-entra-bench-"))
    # A few more users than needed: some generated accounts never become extensions.
    users = str(int(args.users * 1.15) + 20)
    proc, demo = start_emulator(
        workdir / "emulator", args.port, *("--users", users, "--groups", "0"), quiet=True
    )
    try:
        await one(args.databases[0], args, demo, workdir)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
