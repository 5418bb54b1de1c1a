"""Scenario helpers for sync tests: a connected PBX, rules saved through the API, runs driven."""

from __future__ import annotations

from typing import Any

from tests.cloud import Cloud, EntraTenant, connect
from tests.conftest import Api


class Scenario:
    def __init__(
        self,
        api: Api,
        cloud: Cloud,
        tenant: EntraTenant,
        pbx: dict[str, Any],
        headers: dict[str, str],
    ) -> None:
        self.api = api
        self.cloud = cloud
        self.tenant = tenant
        self.pbx = pbx
        self.h = headers

    @property
    def tid(self) -> str:
        return self.tenant.tenant_id

    async def put_rules(
        self, section: str, body: dict[str, Any], expect: int = 200
    ) -> dict[str, Any]:
        resp = await self.api.client.put(
            f"/api/v1/integration/{section}", json=body, headers=self.h
        )
        assert resp.status_code == expect, resp.text
        result: dict[str, Any] = resp.json()
        return result

    async def run_worker(self) -> list[dict[str, Any]]:
        """Let the worker take every waiting run; the runs it finished, oldest first."""
        worker = self.api.app.state.worker
        done = []
        while (run_id := await worker.run_once()) is not None:
            done.append(await self.run(run_id))
        return done

    async def run(self, run_id: str) -> dict[str, Any]:
        resp = await self.api.client.get(f"/api/v1/sync-runs/{run_id}", headers=self.h)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    async def sync(self, **body: Any) -> dict[str, Any]:
        resp = await self.api.client.post("/api/v1/integration/sync", json=body, headers=self.h)
        assert resp.status_code in (200, 202), resp.text
        runs = await self.run_worker()
        assert runs, "no run was executed"
        return runs[-1]

    async def extensions(self, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = {"limit": 1000, **params, **({"cursor": cursor} if cursor else {})}
            page = (
                await self.api.client.get("/api/v1/extensions", params=query, headers=self.h)
            ).json()
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return items

    async def synced(self) -> dict[str, dict[str, Any]]:
        return {e["entra_user_id"]: e for e in await self.extensions(managed_by="entra")}

    def users(self) -> dict[str, Any]:
        return self.cloud.emulator.state.tenants[self.tid].users

    def control(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.cloud.control.request(method, f"/tenants/{self.tid}{path}", **kw)
        assert resp.status_code < 400, resp.text
        return resp.json() if resp.content else None


async def scenario(api: Api, cloud: Cloud, **tenant_kw: Any) -> Scenario:
    tenant = cloud.tenant(**tenant_kw)
    pbx, h = await api.new_pbx(
        max_extensions=tenant_kw.pop("max_extensions", 1000)
        if "max_extensions" in tenant_kw
        else 1000
    )
    await connect(api, cloud, tenant, h)
    return Scenario(api, cloud, tenant, pbx, h)
