"""Presence fixtures: the service wired to the emulator, with or without a served HTTPS webhook.

Without one the public base URL is plain http, so Graph refuses the presence subscription and
everyone is polled; with one (a second instance on the same database, served over HTTPS, as
another replica would be) Graph's notifications reach the service.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.config import Settings
from app.main import create_app
from tests.cloud import Cloud, EntraTenant, connect
from tests.conftest import SECRET_KEY, Api, ServedApp, clean_database, free_port
from tests.presence.helpers import PresenceWorld
from tests.sync.helpers import Scenario, scenario


@pytest.fixture
async def world(sync_api: Api, cloud: Cloud) -> PresenceWorld:
    s = await scenario(sync_api, cloud, users=4, groups=0, seed=5)
    return PresenceWorld(s)


async def served_world(
    app_factory: Any, database_url: str, cloud: Cloud, tls: dict[str, str], users: int
) -> AsyncIterator[PresenceWorld]:
    await clean_database(database_url)
    port = free_port()
    public = f"https://127.0.0.1:{port}"
    overrides = dict(public_base_url=public, **cloud.settings())
    cloud.control.put(
        "/notifications/settings", json={"notification_ca": tls["ca"], "batch_window": 0.02}
    ).raise_for_status()
    tenant: EntraTenant = cloud.tenant(users=users, groups=0, seed=7)
    cloud.control.patch(
        f"/tenants/{tenant.tenant_id}/apps/{tenant.client_id}",
        json={"redirect_uris": [f"{public}/integration/callback"]},
    ).raise_for_status()
    driver: Api = await app_factory(worker_enabled=False, **overrides)
    settings = Settings(
        database_url=database_url,
        secret_key=SECRET_KEY,
        worker_enabled=False,
        scheduler_enabled=False,
        **overrides,
    )
    with ServedApp(create_app(settings), port, tls=(tls["cert"], tls["key"])):
        pbx, h = await driver.new_pbx()
        await connect(driver, cloud, tenant, h)
        yield PresenceWorld(Scenario(driver, cloud, tenant, pbx, h))
    cloud.control.put("/notifications/settings", json={"notification_ca": None}).raise_for_status()


@pytest.fixture
async def served(
    app_factory: Any, database_url: str, cloud: Cloud, service_tls: dict[str, str]
) -> AsyncIterator[PresenceWorld]:
    async for w in served_world(app_factory, database_url, cloud, service_tls, users=4):
        yield w


@pytest.fixture
async def served_many(
    app_factory: Any, database_url: str, cloud: Cloud, service_tls: dict[str, str]
) -> AsyncIterator[PresenceWorld]:
    async for w in served_world(app_factory, database_url, cloud, service_tls, users=700):
        yield w
