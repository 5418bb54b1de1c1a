"""Disable and disconnect end to end: the cleanup runs they choose really delete, and what is
retained is locked while disabled and editable again (PBX-owned fields only) after enable."""

from __future__ import annotations

from typing import Any

from app.directory.models import Phonebook
from tests.cloud import Cloud
from tests.conftest import Api
from tests.directory.helpers import set_managed
from tests.directory.test_extensions import make_ext
from tests.sync.helpers import Scenario
from tests.sync.test_group_sync import groups, new_group, setup


async def _synced_directory(api: Api, cloud: Cloud) -> tuple[Scenario, dict[str, Any]]:
    """Users and two groups synced, plus a manual extension, group and phonebook."""
    s, (a, b, _) = await setup(api, cloud)
    new_group(s, "Team", "security", [a])
    new_group(s, "Crew", "security", [b])
    await s.put_rules("group-sync", {"enabled": True})
    [run] = await s.run_worker()
    assert run["groups"]["created"] == 2
    manual = {
        "ext": await make_ext(s.api, s.h, "5"),
        "group": (
            await s.api.client.post(
                "/api/v1/extension-groups", json={"name": "Manual"}, headers=s.h
            )
        ).json(),
        "book": (
            await s.api.client.post("/api/v1/phonebooks", json={"name": "Manual"}, headers=s.h)
        ).json(),
    }
    return s, manual


async def _phonebooks(s: Scenario) -> list[dict[str, Any]]:
    page = (await s.api.client.get("/api/v1/phonebooks", headers=s.h)).json()
    return list(page["items"])


async def _changes(s: Scenario, run_id: str) -> list[tuple[str, str]]:
    items = (await s.api.client.get(f"/api/v1/sync-runs/{run_id}/changes", headers=s.h)).json()[
        "items"
    ]
    return sorted((c["action"], c["object_type"]) for c in items)


async def test_disable_deleting_groups_and_phonebooks_runs_the_cleanup(
    sync_api: Api, cloud: Cloud, database_url: str
) -> None:
    s, manual = await _synced_directory(sync_api, cloud)
    # Synced phonebooks come from the contacts sync; this one is put in that state directly.
    synced_book = (
        await s.api.client.post("/api/v1/phonebooks", json={"name": "Outlook"}, headers=s.h)
    ).json()
    await set_managed(database_url, Phonebook, synced_book["id"], "entra", "mbx-1")
    extensions_before = await s.synced()

    resp = await s.api.client.post(
        "/api/v1/integration/disable",
        json={"delete_extension_groups": True, "delete_phonebooks": True},
        headers=s.h,
    )
    assert resp.status_code == 202 and resp.json()["status"] == "disabled"
    [cleanup] = await s.run_worker()
    assert cleanup["id"] == resp.json()["cleanup_run_id"]
    assert cleanup["trigger"] == "cleanup" and cleanup["status"] == "succeeded"
    assert cleanup["groups"]["deleted"] == 2
    assert await _changes(s, cleanup["id"]) == [
        ("delete", "extension_group"),
        ("delete", "extension_group"),
        ("delete", "phonebook"),
    ]
    assert set(await groups(s)) == {"Manual"}
    assert [b["id"] for b in await _phonebooks(s)] == [manual["book"]["id"]]
    # Extensions were not chosen: kept, frozen.
    kept = {e["entra_user_id"]: e for e in await s.extensions() if e["entra_user_id"]}
    assert set(kept) == set(extensions_before)
    assert {e["managed_by"] for e in kept.values()} == {"entra_frozen"}


async def test_disconnect_deleting_extensions_and_groups_runs_the_cleanup(
    sync_api: Api, cloud: Cloud
) -> None:
    s, manual = await _synced_directory(sync_api, cloud)
    synced_users = len(await s.synced())
    resp = await s.api.client.post(
        "/api/v1/integration/disconnect",
        json={"delete_extensions": True, "delete_extension_groups": True},
        headers=s.h,
    )
    assert resp.status_code == 202 and resp.json()["status"] == "not_configured"
    [cleanup] = await s.run_worker()
    assert cleanup["id"] == resp.json()["cleanup_run_id"]
    assert cleanup["trigger"] == "cleanup" and cleanup["status"] == "succeeded"
    assert cleanup["users"]["deleted"] == synced_users and cleanup["groups"]["deleted"] == 2
    assert [e["id"] for e in await s.extensions()] == [manual["ext"]["id"]]
    assert [g["id"] for g in (await groups(s)).values()] == [manual["group"]["id"]]
    body = (await s.api.client.get("/api/v1/integration", headers=s.h)).json()
    assert body["status"] == "not_configured" and body["client_id"] is None


async def test_disable_retaining_locks_everything_and_enable_frees_pbx_fields(
    sync_api: Api, cloud: Cloud
) -> None:
    s, manual = await _synced_directory(sync_api, cloud)
    resp = await s.api.client.post("/api/v1/integration/disable", json={}, headers=s.h)
    assert resp.status_code == 200 and resp.json()["cleanup_run_id"] is None
    assert await s.synced() == {}  # nothing is `entra` any more: all frozen
    ext = next(e for e in await s.extensions() if e["entra_user_id"])
    team = (await groups(s))["Team"]
    assert ext["managed_by"] == team["managed_by"] == "entra_frozen"
    ext_url = f"/api/v1/extensions/{ext['id']}"
    group_url = f"/api/v1/extension-groups/{team['id']}"

    # Disabled: no field of a retained object changes, and none is deleted.
    for url, change in [
        (ext_url, {"number": "7777"}),  # PBX-owned, but frozen
        (ext_url, {"first_name": "Changed"}),
        (group_url, {"name": "Renamed"}),
        (group_url, {"member_ids": []}),
    ]:
        r = await s.api.client.patch(url, json=change, headers=s.h)
        assert r.status_code == 409, (url, change, r.text)
        assert r.json()["code"] == "managed_by_entra" and r.json()["managed_by"] == "entra_frozen"
        assert r.json()["locked_fields"] == list(change)
    for url in (ext_url, group_url):
        r = await s.api.client.delete(url, headers=s.h)
        assert r.status_code == 409 and r.json()["code"] == "managed_by_entra"
    assert (await s.api.client.get(ext_url, headers=s.h)).json()["number"] == ext["number"]
    # Manual objects stay fully the PBX's.
    r = await s.api.client.patch(
        f"/api/v1/extensions/{manual['ext']['id']}", json={"first_name": "Mine"}, headers=s.h
    )
    assert r.status_code == 200

    # Enabled again (a resync): PBX-owned fields edit, Entra-owned ones and deletion stay locked.
    enabled = await s.api.client.post("/api/v1/integration/enable", headers=s.h)
    assert enabled.status_code == 202
    [resync] = await s.run_worker()
    assert resync["trigger"] == "resync" and resync["status"] == "succeeded"
    r = await s.api.client.patch(ext_url, json={"number": "7777"}, headers=s.h)
    assert r.status_code == 200 and r.json()["number"] == "7777"
    assert r.json()["managed_by"] == "entra"
    r = await s.api.client.patch(ext_url, json={"first_name": "Changed"}, headers=s.h)
    assert r.status_code == 409 and r.json()["managed_by"] == "entra"
    assert r.json()["locked_fields"] == ["first_name"]
    r = await s.api.client.patch(group_url, json={"name": "Renamed"}, headers=s.h)
    assert r.status_code == 409 and r.json()["locked_fields"] == ["name"]
    for url in (ext_url, group_url):
        assert (await s.api.client.delete(url, headers=s.h)).status_code == 409
