"""Group sync end to end against the emulated Graph: ranges, nesting, the limit, delta rounds,
pause and resume, locks, the deletion guard, dry runs, and users and groups in one run."""

from __future__ import annotations

from typing import Any

import pytest

from tests.cloud import Cloud
from tests.conftest import Api
from tests.sync.helpers import Scenario, scenario
from tests.sync.test_user_rules import new_user

KINDS: dict[str, dict[str, Any]] = {
    "security": {"groupTypes": [], "securityEnabled": True, "mailEnabled": False},
    "microsoft365": {"groupTypes": ["Unified"], "securityEnabled": False, "mailEnabled": True},
    "distribution": {"groupTypes": [], "securityEnabled": False, "mailEnabled": True},
}


def new_group(
    s: Scenario, name: str, kind: str = "security", members: tuple[str, ...] | list[str] = ()
) -> str:
    gid = str(s.control("POST", "/groups", json={"displayName": name, **KINDS[kind]})["id"])
    if members:
        s.control("POST", f"/groups/{gid}/members", json={"ids": list(members)})
    return gid


async def setup(
    api: Api, cloud: Cloud, users: tuple[str, ...] = ("ann", "bob", "cat")
) -> tuple[Scenario, list[str]]:
    """A tenant with a few users, all synced to extensions."""
    s = await scenario(api, cloud, users=0, groups=0, seed=1)
    ids = [new_user(s, n) for n in users]
    await s.put_rules("user-sync", {"enabled": True})
    await s.run_worker()
    return s, ids


async def groups(s: Scenario) -> dict[str, dict[str, Any]]:
    """Extension groups by name, with their members as Entra user ids."""
    ext_to_user = {e["id"]: e["entra_user_id"] for e in await s.extensions()}
    page = (
        await s.api.client.get("/api/v1/extension-groups", params={"limit": 1000}, headers=s.h)
    ).json()
    return {
        g["name"]: {**g, "users": {ext_to_user[m] for m in g["member_ids"]}} for g in page["items"]
    }


async def changes(s: Scenario, run_id: str) -> list[dict[str, Any]]:
    resp = await s.api.client.get(f"/api/v1/sync-runs/{run_id}/changes", headers=s.h)
    return list(resp.json()["items"])


def graph_paths(s: Scenario) -> list[str]:
    return [f"{r['path']}?{r['query']}" for r in s.cloud.requests("/v1.0/")]


@pytest.mark.parametrize(
    "range_, expected",
    [
        ({"mode": "all"}, {"Sec", "M365", "Dist"}),
        ({"mode": "types", "types": ["security"]}, {"Sec"}),
        ({"mode": "types", "types": ["microsoft365"]}, {"M365"}),
        ({"mode": "groups"}, {"Dist"}),
    ],
)
async def test_range_modes(
    sync_api: Api, cloud: Cloud, range_: dict[str, Any], expected: set[str]
) -> None:
    s, (a, b, c) = await setup(sync_api, cloud)
    sec = new_group(s, "Sec", "security", [a, b])
    m365 = new_group(s, "M365", "microsoft365", [c])
    dist = new_group(s, "Dist", "distribution", [a, c])
    if range_["mode"] == "groups":
        range_ = {**range_, "group_ids": [dist, "00000000-0000-0000-0000-000000000000"]}
    s.cloud.clear_requests()
    await s.put_rules("group-sync", {"enabled": True, "range": range_})
    [run] = await s.run_worker()
    assert run["trigger"] == "initial" and run["scopes"] == ["groups"]
    got = await groups(s)
    assert set(got) == expected
    want = {"Sec": (sec, {a, b}), "M365": (m365, {c}), "Dist": (dist, {a, c})}
    for name in expected:
        assert got[name]["entra_group_id"] == want[name][0]
        assert got[name]["users"] == want[name][1]
        assert got[name]["managed_by"] == "entra"
    assert run["groups"]["created"] == len(expected) and run["groups"]["failed"] == 0
    paths = graph_paths(s)
    assert not any("expand" in p for p in paths)
    expanded = {p.split("/")[3] for p in paths if "/transitiveMembers" in p}
    assert expanded == {want[n][0] for n in expected}
    if range_["mode"] == "groups":
        assert [w["code"] for w in run["warnings"]] == ["range_group_missing"]
    changed = await changes(s, run["id"])
    assert {(c["action"], c["object_type"], c["display_name"]) for c in changed} == {
        ("create", "extension_group", n) for n in expected
    }


async def test_nesting_renames_and_membership_by_delta(sync_api: Api, cloud: Cloud) -> None:
    s, (a, b, c) = await setup(sync_api, cloud)
    inner = new_group(s, "Inner", "distribution", [b])
    outer = new_group(s, "Outer", "security", [a, inner])
    quiet = new_group(s, "Quiet", "security", [c])
    await s.put_rules(
        "group-sync", {"enabled": True, "range": {"mode": "types", "types": ["security"]}}
    )
    await s.run_worker()
    got = await groups(s)
    assert got["Outer"]["users"] == {a, b}  # transitive: Inner's member counts
    assert set(got) == {"Outer", "Quiet"}

    # Nothing changed: one delta round, no members read.
    s.cloud.clear_requests()
    run = await s.sync(scopes=["groups"])
    paths = graph_paths(s)
    assert any(p.startswith("/v1.0/groups/delta") for p in paths)
    assert not any("transitiveMembers" in p for p in paths)
    assert run["groups"]["unchanged"] == 2 and run["groups"]["updated"] == 0

    # A change inside the nested group re-expands the group containing it, and only that one.
    s.control("DELETE", f"/groups/{inner}/members/{b}")
    s.control("POST", f"/groups/{inner}/members", json={"id": c})
    s.control("PATCH", f"/groups/{quiet}", json={"displayName": "Quiet Room"})
    s.cloud.clear_requests()
    run = await s.sync(scopes=["groups"])
    expanded = {p.split("/")[3] for p in graph_paths(s) if "transitiveMembers" in p}
    assert expanded == {outer}
    got = await groups(s)
    assert got["Outer"]["users"] == {a, c}
    assert got["Quiet Room"]["users"] == {c} and "Quiet" not in got
    assert run["groups"]["updated"] == 2
    fields = {c["display_name"]: c["fields"] for c in await changes(s, run["id"])}
    assert fields["Quiet Room"]["name"] == ["Quiet", "Quiet Room"]
    assert fields["Outer"]["members_added"] == [None, 1]

    # A direct member leaves; a group deleted in Entra is deleted here.
    s.control("DELETE", f"/groups/{outer}/members/{a}")
    s.control("DELETE", f"/groups/{quiet}")
    run = await s.sync(scopes=["groups"])
    got = await groups(s)
    assert set(got) == {"Outer"} and got["Outer"]["users"] == {c}
    assert run["groups"]["deleted"] == 1

    # An expired delta token: a full listing, with a warning.
    s.control("POST", "/expire-delta-tokens")
    run = await s.sync(scopes=["groups"])
    assert [w["code"] for w in run["warnings"] if w["scope"] == "groups"] == ["delta_token_expired"]
    assert (await groups(s))["Outer"]["users"] == {c}


async def test_group_limit_name_clash_and_seats(sync_api: Api, cloud: Cloud) -> None:
    s, (a, _, _) = await setup(sync_api, cloud)
    manual = (
        await s.api.client.post(
            "/api/v1/extension-groups", json={"name": "Alpha", "member_ids": []}, headers=s.h
        )
    ).json()
    resp = await s.api.client.patch(
        f"/api/v1/pbxes/{s.pbx['id']}", json={"max_extension_groups": 3}, headers=s.api.operator
    )
    assert resp.status_code == 200, resp.text
    ids = {n: new_group(s, n, "security", [a]) for n in ("Charlie", "Alpha", "Bravo")}
    await s.put_rules("group-sync", {"enabled": True})
    [run] = await s.run_worker()
    got = await groups(s)
    # Two seats left: "Alpha" and "Bravo" come first by name; "Alpha" clashes with the manual one.
    assert set(got) == {"Alpha", "Alpha (2)", "Bravo"}
    assert got["Alpha (2)"]["entra_group_id"] == ids["Alpha"]
    assert [(f["source_id"], f["code"]) for f in run["failures"]] == [
        (ids["Charlie"], "group_limit_reached")
    ]
    assert run["status"] == "partial"
    assert ("group_name_taken", ids["Alpha"]) in [
        (w["code"], w["source_id"]) for w in run["warnings"]
    ]
    # Synced groups keep their seats on the next run; a freed seat goes to the failed group.
    run = await s.sync(scopes=["groups"])
    assert run["groups"]["created"] == 0 and run["groups"]["unchanged"] == 2
    summary = (await s.api.client.get("/api/v1/integration/group-sync", headers=s.h)).json()
    assert summary["summary"]["synced"] == 2 and summary["summary"]["failed"] == 1
    await s.api.client.delete(f"/api/v1/extension-groups/{manual['id']}", headers=s.h)
    run = await s.sync(scopes=["groups"])
    assert run["groups"]["created"] == 1 and run["failures"] == []
    # ... and with the manual group gone, the suffixed one takes its Entra name.
    assert run["groups"]["updated"] == 1
    got = await groups(s)
    assert set(got) == {"Alpha", "Bravo", "Charlie"}
    assert got["Alpha"]["entra_group_id"] == ids["Alpha"]
    summary = (await s.api.client.get("/api/v1/integration/group-sync", headers=s.h)).json()
    assert summary["summary"]["synced"] == 3 and summary["summary"]["failed"] == 0


async def test_locks_pause_and_resume(sync_api: Api, cloud: Cloud) -> None:
    s, (a, b, _) = await setup(sync_api, cloud)
    new_group(s, "Team", "security", [a])
    new_group(s, "Crew", "security", [b])
    manual = (
        await s.api.client.post(
            "/api/v1/extension-groups", json={"name": "Manual", "member_ids": []}, headers=s.h
        )
    ).json()
    await s.put_rules("group-sync", {"enabled": True})
    await s.run_worker()
    team = (await groups(s))["Team"]
    url = f"/api/v1/extension-groups/{team['id']}"
    renamed = await s.api.client.patch(url, json={"name": "X"}, headers=s.h)
    assert renamed.status_code == 409 and renamed.json()["code"] == "managed_by_entra"
    deleted = await s.api.client.delete(url, headers=s.h)
    assert deleted.status_code == 409 and deleted.json()["code"] == "managed_by_entra"

    # Pause retaining: frozen, locked, the rules read-only.
    paused = await s.api.client.post(
        "/api/v1/integration/group-sync/pause",
        json={"delete_extension_groups": False},
        headers=s.h,
    )
    assert paused.json() == {"state": "paused", "cleanup_run_id": None}
    got = await groups(s)
    assert got["Team"]["managed_by"] == "entra_frozen" and got["Manual"]["managed_by"] == "pbx"
    members = await s.api.client.patch(url, json={"member_ids": []}, headers=s.h)
    assert members.status_code == 409
    assert (await s.api.client.delete(url, headers=s.h)).status_code == 409
    edit = await s.api.client.put(
        "/api/v1/integration/group-sync", json={"enabled": True}, headers=s.h
    )
    assert edit.status_code == 409 and edit.json()["code"] == "sync_paused"
    section = (await s.api.client.get("/api/v1/integration/group-sync", headers=s.h)).json()
    assert section["state"] == "paused" and section["enabled"] is True

    # Resume: a resync run, the groups synced again.
    resumed = await s.api.client.post("/api/v1/integration/group-sync/resume", headers=s.h)
    assert resumed.json()["state"] == "active"
    [run] = await s.run_worker()
    assert run["trigger"] == "resync" and run["groups"]["unchanged"] == 2
    assert {g["managed_by"] for n, g in (await groups(s)).items() if n != "Manual"} == {"entra"}

    # Pause deleting: a cleanup run removes the synced groups, the manual one stays.
    paused = await s.api.client.post(
        "/api/v1/integration/group-sync/pause",
        json={"delete_extension_groups": True},
        headers=s.h,
    )
    cleanup_id = paused.json()["cleanup_run_id"]
    [run] = await s.run_worker()
    assert run["id"] == cleanup_id and run["groups"]["deleted"] == 2
    assert [g["id"] for g in (await groups(s)).values()] == [manual["id"]]


@pytest.mark.parametrize("auto_delete", [True, False])
async def test_out_of_range_groups(sync_api: Api, cloud: Cloud, auto_delete: bool) -> None:
    s, (a, _, _) = await setup(sync_api, cloud)
    team = new_group(s, "Team", "security", [a])
    other = new_group(s, "Other", "security", [a])
    body = {
        "enabled": True,
        "range": {"mode": "groups", "group_ids": [team, other]},
        "auto_delete_out_of_range": auto_delete,
    }
    await s.put_rules("group-sync", body)
    await s.run_worker()
    await s.put_rules("group-sync", {**body, "range": {"mode": "groups", "group_ids": [team]}})
    run = await s.sync(scopes=["groups"])
    got = await groups(s)
    if auto_delete:
        assert set(got) == {"Team"} and run["groups"]["deleted"] == 1
    else:
        assert got["Other"]["managed_by"] == "pbx" and got["Other"]["former_entra_id"] == other
        assert ("release", other) in [
            (c["action"], c["entra_id"]) for c in await changes(s, run["id"])
        ]
        # Back in range: the released group is adopted again, not duplicated.
        await s.put_rules("group-sync", body)
        await s.sync(scopes=["groups"])
        got = await groups(s)
        assert got["Other"]["managed_by"] == "entra" and got["Other"]["entra_group_id"] == other


async def test_deletion_guard_and_dry_run(sync_api: Api, cloud: Cloud) -> None:
    s, (a, _, _) = await setup(sync_api, cloud)
    ids = [new_group(s, f"G{i}", "security", [a]) for i in range(3)]
    await s.put_rules("deletion-guard", {"enabled": True, "max_deletions": 1})
    await s.put_rules("group-sync", {"enabled": True})
    await s.run_worker()

    # A dry run plans and changes nothing.
    extra = new_group(s, "New", "security", [a])
    before = await groups(s)
    dry = await s.sync(scopes=["groups"], dry_run=True)
    assert [c["entra_id"] for c in dry["plan"]["groups"]["creates"]] == [extra]
    assert dry["groups"]["created"] == 1 and await groups(s) == before
    assert await changes(s, dry["id"]) == []

    # Two deletions over a bound of one: creates go ahead, deletions are held.
    s.control("DELETE", f"/groups/{ids[0]}")
    s.control("DELETE", f"/groups/{ids[1]}")
    held = await s.sync(scopes=["groups"])
    assert held["status"] == "held"
    assert sorted(g["entra_id"] for g in held["held"]["extension_groups"]) == sorted(ids[:2])
    got = await groups(s)
    assert {"G0", "G1", "New"} <= set(got)
    integ = (await s.api.client.get("/api/v1/integration", headers=s.h)).json()
    assert integ["held_run_id"] == held["id"]

    # A third deletion since: the approved run ends failed with plan_stale, deleting nothing.
    s.control("DELETE", f"/groups/{ids[2]}")
    stale = await s.api.client.post(f"/api/v1/sync-runs/{held['id']}/approve", headers=s.h)
    assert stale.status_code == 202 and stale.json()["status"] == "queued"
    [failed] = await s.run_worker()
    assert failed["status"] == "failed" and failed["error"]["code"] == "plan_stale"
    assert {"G0", "G1", "G2"} <= set(await groups(s))

    # The next run holds all three; approving deletes exactly those.
    held2 = await s.sync(scopes=["groups"])
    assert held2["status"] == "held" and len(held2["held"]["extension_groups"]) == 3
    approved = await s.api.client.post(f"/api/v1/sync-runs/{held2['id']}/approve", headers=s.h)
    assert approved.status_code == 202, approved.text
    [done] = await s.run_worker()
    assert done["id"] == held2["id"] and done["status"] == "succeeded"
    assert done["held"]["deleted_groups"] == 3 and done["groups"]["deleted"] == 3
    assert not {"G0", "G1", "G2"} & set(await groups(s))


async def test_users_and_groups_in_one_run_keep_memberships(sync_api: Api, cloud: Cloud) -> None:
    s, (a, b, _) = await setup(sync_api, cloud)
    team = new_group(s, "Team", "security", [a])
    await s.put_rules("group-sync", {"enabled": True})
    await s.run_worker()

    # A new user joins the group: the users scope creates the extension first, then the
    # groups scope puts it in the group, in the same run.
    newbie = new_user(s, "newbie")
    s.control("POST", f"/groups/{team}/members", json={"id": newbie})
    run = await s.sync()
    assert run["scopes"] == ["users", "groups"]
    assert run["users"]["created"] == 1
    assert (await groups(s))["Team"]["users"] == {a, newbie}

    # A user sync alone that creates an extension brings the groups along too.
    late = new_user(s, "late")
    s.control("POST", f"/groups/{team}/members", json={"id": late})
    s.control("POST", f"/groups/{team}/members", json={"id": b})
    run = await s.sync(scopes=["users"])
    assert run["scopes"] == ["users", "groups"]
    assert (await groups(s))["Team"]["users"] == {a, b, newbie, late}

    # A deleted user leaves the group with its extension.
    s.control("DELETE", f"/users/{a}")
    run = await s.sync(scopes=["users"])
    assert run["users"]["deleted"] == 1
    assert (await groups(s))["Team"]["users"] == {b, newbie, late}


async def test_a_failure_while_reading_members_applies_nothing(sync_api: Api, cloud: Cloud) -> None:
    s, (a, b, _) = await setup(sync_api, cloud)
    for i in range(4):
        new_group(s, f"F{i}", "security", [a, b])
    fault = {"action": "error", "status": 403, "path": "transitiveMembers", "tenant_id": s.tid}
    cloud.control.post("/faults", json=fault).raise_for_status()
    try:
        await s.put_rules("group-sync", {"enabled": True})
        [run] = await s.run_worker()
    finally:
        cloud.control.delete("/faults")
    assert run["status"] == "failed" and run["error"]["scope"] == "groups"
    assert run["error"]["code"] == "graph_error" and "403" in run["error"]["message"]
    assert await groups(s) == {}
    again = await s.sync(scopes=["groups"])
    assert again["groups"]["created"] == 4
