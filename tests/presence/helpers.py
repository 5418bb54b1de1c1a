"""Presence scenarios: a connected PBX with synced users following Teams, the loop driven by hand."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from app.db import utcnow
from app.presence.loop import PresenceLoop
from tests.sync.helpers import Scenario


class PresenceWorld:
    def __init__(self, s: Scenario) -> None:
        self.s = s
        self.now = utcnow()
        self.loop = self.new_loop("first")

    @property
    def runtime(self) -> Any:
        return self.s.api.app.state.runtime

    def new_loop(self, name: str) -> PresenceLoop:
        loop = PresenceLoop(self.runtime, name=name)
        loop.gather_seconds = 0  # the tests take the notifications when they have arrived
        # The tests jump the clock by minutes between ticks: a lease that outlives those jumps
        # (a loop that misses its lease is a gap, and catches up: tested on its own).
        loop.lease = timedelta(hours=2)
        return loop

    async def synced_users(self) -> dict[str, dict[str, Any]]:
        """Sync every user of the tenant; Entra id -> extension."""
        await self.s.put_rules("user-sync", {"enabled": True})
        await self.s.run_worker()
        return await self.s.synced()

    async def presence_sync(self, enabled: bool) -> None:
        await self.s.put_rules("presence-sync", {"enabled": enabled})

    async def follow(self, ext: dict[str, Any], enabled: bool = True, **mapping: str) -> None:
        body: dict[str, Any] = {"enabled": enabled}
        if mapping:
            body["mapping"] = mapping
        resp = await self.s.api.client.put(
            f"/api/v1/extensions/{ext['id']}/teams-presence", json=body, headers=self.s.h
        )
        assert resp.status_code == 200, resp.text

    def teams(self, user_id: str, availability: str, activity: str | None = None) -> None:
        self.s.control(
            "PUT",
            f"/users/{user_id}/presence",
            json={"availability": availability, "activity": activity or availability},
        )

    async def presence(self, ext: dict[str, Any]) -> dict[str, Any]:
        resp = await self.s.api.client.get(
            f"/api/v1/extensions/{ext['id']}/presence", headers=self.s.h
        )
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    async def manual(self, ext: dict[str, Any], status: str) -> None:
        resp = await self.s.api.client.put(
            f"/api/v1/extensions/{ext['id']}/presence", json={"status": status}, headers=self.s.h
        )
        assert resp.status_code == 200, resp.text

    async def tick(self, after: float = 0.0, loop: PresenceLoop | None = None) -> Any:
        """One upkeep pass, `after` seconds later than the previous one."""
        self.now += timedelta(seconds=after)
        done = await (loop or self.loop).tick(self.now)
        return done.get(self.s.pbx["id"])

    def reads(self) -> list[list[str]]:
        """The ids of each getPresencesByUserId request since the last clear, in order."""
        body = self.s.cloud.control.get(
            "/presence/reads", params={"tenant_id": self.s.tid}
        ).raise_for_status()
        return [r["ids"] for r in body.json()["value"]]

    def clear(self) -> None:
        self.s.cloud.control.delete("/presence/reads").raise_for_status()
        self.s.cloud.clear_requests()

    def graph_subscriptions(self) -> list[dict[str, Any]]:
        body = self.s.cloud.control.get("/subscriptions", params={"tenant_id": self.s.tid})
        return [x for x in body.raise_for_status().json()["value"] if "presences" in x["resource"]]

    def subscription_calls(self) -> list[tuple[str, str]]:
        return [
            (r["method"], r["path"])
            for r in self.s.cloud.requests("/subscriptions")
            if r["tenant_id"] == self.s.tid
        ]


def subscribed_ids(sub: dict[str, Any]) -> set[str]:
    return set(re.findall(r"'([^']+)'", sub["resource"]))


def at(now: datetime, seconds: float) -> datetime:
    return now + timedelta(seconds=seconds)
