"""Outlook's limits and failures: throttled sub-requests wait out Retry-After, and a run that
can't read Outlook fails and deletes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from app.graph.client import GraphClient
from tests.cloud import Cloud
from tests.conftest import Api
from tests.contacts.helpers import (
    add_contact,
    contacts_rules,
    graph_requests,
    personal,
    setup,
    share,
)


@pytest.fixture(autouse=True)
def _clear_faults(cloud: Cloud) -> Any:
    yield
    cloud.control.delete("/faults")


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Backoff waits recorded instead of slept."""
    seen: list[float] = []

    async def pause(self: GraphClient, seconds: float) -> None:
        self.stats.waited += seconds
        seen.append(seconds)

    monkeypatch.setattr(GraphClient, "_pause", pause)
    return seen


async def test_throttled_folders_wait_out_retry_after(
    sync_api: Api, cloud: Cloud, waits: list[float]
) -> None:
    s, ids = await setup(sync_api, cloud, users=("ann", "bob"))
    for uid in ids.values():
        add_contact(s, uid, "Some", f"One{uid[:4]}")
        share(s, uid)
    resp = s.cloud.control.post(
        "/faults",
        json={
            "tenant_id": s.tid,
            "action": "throttle",
            "path": "/contacts",
            "retry_after": 7,
            "count": 2,
        },
    )
    assert resp.status_code == 201, resp.text
    s.cloud.clear_requests()
    await contacts_rules(s, personal={"enabled": True})
    run = (await s.run_worker())[-1]
    assert run["status"] == "succeeded", run["error"]
    assert run["graph"]["throttled"] == 2
    assert 7 in waits
    throttled = [r for r in graph_requests(s) if r["status"] == 429]
    assert len(throttled) == 2 and all(r.get("batch") for r in throttled)
    for uid in ids.values():
        assert len(await personal(s, uid)) == 1


async def test_outlook_unreachable_fails_the_scope_and_deletes_nothing(
    sync_api: Api, cloud: Cloud, waits: list[float]
) -> None:
    s, ids = await setup(sync_api, cloud, users=("ann",))
    ann = ids["ann"]
    for i in range(3):
        add_contact(s, ann, f"Kept{i}", f"Contact{i}")
    share(s, ann)
    await contacts_rules(s, personal={"enabled": True})
    await s.run_worker()
    for c in s.control("GET", f"/users/{ann}/contact-folders")["value"]:
        for contact in s.control("GET", f"/contact-folders/{c['id']}/contacts")["value"]:
            s.control("DELETE", f"/contacts/{contact['id']}")
    resp = s.cloud.control.post(
        "/faults",
        json={"tenant_id": s.tid, "action": "error", "status": 503, "path": "/contacts"},
    )
    assert resp.status_code == 201
    run = await s.sync(scopes=["contacts"])
    assert run["status"] == "failed"
    assert run["error"]["scope"] == "contacts" and run["error"]["code"] == "graph_error"
    assert len(await personal(s, ann)) == 3  # nothing deleted
