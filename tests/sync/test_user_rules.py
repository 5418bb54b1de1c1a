"""User-sync rules end to end: ranges, numbers, delete rules, association, capacity, pause, guard."""

from __future__ import annotations

from typing import Any

import pytest

from tests.cloud import Cloud
from tests.conftest import Api
from tests.directory.test_extensions import make_ext
from tests.sync.helpers import Scenario, scenario


def new_user(s: Scenario, local: str, **props: Any) -> str:
    body = {
        "userPrincipalName": f"{local}@{s.tenant.domain}",
        "displayName": props.pop("displayName", local.title()),
        "givenName": props.pop("givenName", local.title()),
        "surname": props.pop("surname", "Tester"),
        "mail": props.pop("mail", f"{local}@{s.tenant.domain}"),
        "accountEnabled": props.pop("accountEnabled", True),
        "userType": props.pop("userType", "Member"),
        **props,
    }
    created: dict[str, Any] = s.control("POST", "/users", json=body)
    return str(created["id"])


async def small(api: Api, cloud: Cloud, **kw: Any) -> Scenario:
    # A tenant with nothing but its admin, so each test decides who exists.
    return await scenario(api, cloud, users=0, groups=0, seed=1, **kw)


async def test_group_range_uses_transitive_members(sync_api: Api, cloud: Cloud) -> None:
    s = await small(sync_api, cloud)
    a, b, c = (new_user(s, n) for n in ("alice", "bob", "carol"))
    outer = s.control(
        "POST",
        "/groups",
        json={"displayName": "Outer", "securityEnabled": True, "mailEnabled": False},
    )["id"]
    inner = s.control(
        "POST",
        "/groups",
        json={"displayName": "Inner", "securityEnabled": True, "mailEnabled": False},
    )["id"]
    s.control("POST", f"/groups/{outer}/members", json={"ids": [a, inner]})
    s.control("POST", f"/groups/{inner}/members", json={"id": b})
    saved = await s.put_rules(
        "user-sync", {"enabled": True, "range": {"mode": "groups", "group_ids": [outer]}}
    )
    assert saved["range"]["groups"] == [{"id": outer, "display_name": "Outer", "missing": False}]
    await s.run_worker()
    assert set(await s.synced()) == {a, b}
    # Membership moves users in and out of range without any change to the users themselves.
    s.control("DELETE", f"/groups/{inner}/members/{b}")
    s.control("POST", f"/groups/{inner}/members", json={"id": c})
    run = await s.sync()
    assert set(await s.synced()) == {a, c}
    assert run["users"]["created"] == 1 and run["users"]["deleted"] == 1
    # A chosen group that disappears is reported.
    s.control("DELETE", f"/groups/{outer}")
    got = (await s.api.client.get("/api/v1/integration/user-sync", headers=s.h)).json()
    assert got["range"]["groups"][0]["missing"] is True


async def test_delete_rules_disabled_and_deleted(sync_api: Api, cloud: Cloud) -> None:
    s = await small(sync_api, cloud)
    keep_disabled = new_user(s, "dora")
    soft = new_user(s, "sam")
    hard = new_user(s, "hank")
    await s.put_rules("user-sync", {"enabled": True, "delete_when": ["deleted"]})
    await s.run_worker()
    s.control("POST", f"/users/{keep_disabled}/disable")
    s.control("PATCH", f"/users/{keep_disabled}", json={"jobTitle": "On leave"})
    s.control("POST", f"/users/{soft}/soft-delete")
    s.control("DELETE", f"/users/{hard}")
    await s.sync()
    synced = await s.synced()
    assert set(synced) == {keep_disabled, s.tenant.admin_id} & set(synced) | {keep_disabled}
    assert synced[keep_disabled]["job_title"] == "On leave"
    assert soft not in synced and hard not in synced
    all_numbers = {e["entra_user_id"] for e in await s.extensions()}
    assert soft not in all_numbers and hard not in all_numbers


async def test_without_delete_rules_deleted_users_are_released(sync_api: Api, cloud: Cloud) -> None:
    s = await small(sync_api, cloud)
    gone = new_user(s, "gina")
    off = new_user(s, "otto")
    await s.put_rules("user-sync", {"enabled": True, "delete_when": []})
    await s.run_worker()
    s.control("POST", f"/users/{gone}/soft-delete")
    s.control("POST", f"/users/{off}/disable")
    run = await s.sync()
    by_former = {e["former_entra_id"]: e for e in await s.extensions(managed_by="pbx")}
    assert by_former[gone]["entra_user_id"] is None
    assert (await s.synced())[off]["managed_by"] == "entra"
    changes = (
        await s.api.client.get(f"/api/v1/sync-runs/{run['id']}/changes", headers=s.h)
    ).json()["items"]
    assert ("release", gone) in [(c["action"], c["entra_id"]) for c in changes]


async def test_out_of_range_with_auto_delete_off_releases(sync_api: Api, cloud: Cloud) -> None:
    s = await small(sync_api, cloud)
    guest = new_user(s, "gus", userType="Member")
    await s.put_rules(
        "user-sync",
        {
            "enabled": True,
            "range": {"mode": "user_types", "user_types": ["member"]},
            "auto_delete_out_of_range": False,
        },
    )
    await s.run_worker()
    s.control("PATCH", f"/users/{guest}", json={"userType": "Guest"})
    await s.sync()
    released = [e for e in await s.extensions(managed_by="pbx") if e["former_entra_id"] == guest]
    assert len(released) == 1


@pytest.mark.parametrize("associate", [True, False])
async def test_associate_by_email(sync_api: Api, cloud: Cloud, associate: bool) -> None:
    s = await small(sync_api, cloud)
    uid = new_user(s, "amy", mail=f"Amy@{s.tenant.domain}", jobTitle="Sales")
    manual = await make_ext(
        s.api, s.h, "777", first_name="Old", email=f"amy@{s.tenant.domain.upper()}"
    )
    await s.put_rules("user-sync", {"enabled": True, "associate_by_email": associate})
    [run] = await s.run_worker()
    got = (await s.api.client.get(f"/api/v1/extensions/{manual['id']}", headers=s.h)).json()
    if associate:
        assert run["users"]["associated"] == 1
        assert got["managed_by"] == "entra" and got["entra_user_id"] == uid
        assert got["first_name"] == "Amy" and got["job_title"] == "Sales" and got["number"] == "777"
    else:
        assert got["managed_by"] == "pbx" and got["first_name"] == "Old"
        assert [(f["source_id"], f["code"]) for f in run["failures"]] == [(uid, "email_taken")]


async def test_capacity_and_retry_of_failed_users(sync_api: Api, cloud: Cloud) -> None:
    s = await small(sync_api, cloud)
    ids = sorted(new_user(s, n) for n in ("ann", "ben", "cat"))
    # The admin exists too: four users for a PBX with three seats, one of them manual.
    await make_ext(s.api, s.h, "9", first_name="Manual")
    await s.api.client.patch(
        f"/api/v1/pbxes/{s.pbx['id']}", json={"max_extensions": 3}, headers=s.api.operator
    )
    await s.put_rules("user-sync", {"enabled": True})
    [run] = await s.run_worker()
    everyone = sorted([*ids, s.tenant.admin_id])
    assert set(await s.synced()) == set(everyone[:2])
    assert {f["source_id"] for f in run["failures"] if f["code"] == "capacity_exceeded"} == set(
        everyone[2:]
    )
    # Freeing a seat lets the next run pick a failed user up, though nothing changed in Entra.
    manual = next(e for e in await s.extensions(managed_by="pbx"))
    await s.api.client.delete(f"/api/v1/extensions/{manual['id']}", headers=s.h)
    run2 = await s.sync()
    assert run2["users"]["created"] == 1
    assert set(await s.synced()) == set(everyone[:3])


async def test_property_numbers_end_to_end(sync_api: Api, cloud: Cloud) -> None:
    s = await small(sync_api, cloud)
    ok = new_user(s, "pia", businessPhones=["+1 425 555 0100 x4321"])
    bad = new_user(s, "pat", businessPhones=["+1 425 555 0100"])
    attr = new_user(s, "pol", onPremisesExtensionAttributes={"extensionAttribute3": "555"})
    await s.put_rules(
        "user-sync", {"enabled": True, "number": {"mode": "property", "property": "businessPhones"}}
    )
    [run] = await s.run_worker()
    synced = await s.synced()
    assert synced[ok]["number"] == "4321"
    codes = {f["source_id"]: f["code"] for f in run["failures"]}
    assert codes[bad] == "extension_number_invalid" and codes[attr] == "missing_required_field"
    # The rule change makes the next run a full listing that reads the other property.
    await s.put_rules(
        "user-sync",
        {"enabled": True, "number": {"mode": "property", "property": "extensionAttribute3"}},
    )
    s.cloud.clear_requests()
    await s.sync()
    assert (await s.synced())[attr]["number"] == "555"
    assert any(r["path"].endswith("/v1.0/users") for r in s.cloud.requests("/v1.0/users"))


async def test_rules_api_states(sync_api: Api, cloud: Cloud, database_url: str) -> None:
    s = await small(sync_api, cloud)
    uid = new_user(s, "ray")
    off = (await s.api.client.get("/api/v1/integration/user-sync", headers=s.h)).json()
    assert off["state"] == "off" and off["summary"] == {
        "synced": 0,
        "failed": 0,
        "last_run_id": None,
    }
    await s.put_rules("user-sync", {"enabled": True})
    await s.run_worker()
    turn_off = await s.api.client.put(
        "/api/v1/integration/user-sync", json={"enabled": False}, headers=s.h
    )
    assert turn_off.status_code == 422 and turn_off.json()["code"] == "use_pause_endpoint"
    bad = await s.api.client.put(
        "/api/v1/integration/user-sync",
        json={"enabled": True, "number": {"mode": "x"}},
        headers=s.h,
    )
    assert bad.status_code == 422

    paused = await s.api.client.post(
        "/api/v1/integration/user-sync/pause", json={"delete_extensions": False}, headers=s.h
    )
    assert paused.json() == {"state": "paused", "cleanup_run_id": None}
    frozen = next(e for e in await s.extensions() if e["entra_user_id"] == uid)
    assert frozen["managed_by"] == "entra_frozen"
    edit = await s.api.client.put(
        "/api/v1/integration/user-sync", json={"enabled": True}, headers=s.h
    )
    assert edit.status_code == 409 and edit.json()["code"] == "sync_paused"
    locked = await s.api.client.patch(
        f"/api/v1/extensions/{frozen['id']}", json={"first_name": "X"}, headers=s.h
    )
    assert locked.status_code == 409
    nothing = await s.api.client.post(
        "/api/v1/integration/sync", json={"scopes": ["users"]}, headers=s.h
    )
    assert nothing.status_code == 409 and nothing.json()["code"] == "section_not_active"

    resumed = await s.api.client.post("/api/v1/integration/user-sync/resume", headers=s.h)
    assert resumed.json()["state"] == "active"
    [run] = await s.run_worker()
    assert run["trigger"] == "resync"
    assert (await s.synced())[uid]["managed_by"] == "entra"
    summary = (await s.api.client.get("/api/v1/integration/user-sync", headers=s.h)).json()[
        "summary"
    ]
    assert summary["synced"] == len(await s.synced()) and summary["last_run_id"] == run["id"]


async def test_pause_deleting_runs_a_cleanup(sync_api: Api, cloud: Cloud) -> None:
    s = await small(sync_api, cloud)
    new_user(s, "del")
    manual = await make_ext(s.api, s.h, "9")
    await s.put_rules("user-sync", {"enabled": True})
    await s.run_worker()
    paused = await s.api.client.post(
        "/api/v1/integration/user-sync/pause", json={"delete_extensions": True}, headers=s.h
    )
    cleanup_id = paused.json()["cleanup_run_id"]
    [run] = await s.run_worker()
    assert run["id"] == cleanup_id and run["trigger"] == "cleanup" and run["status"] == "succeeded"
    assert [e["id"] for e in await s.extensions()] == [manual["id"]]


async def test_deletion_guard_holds_then_approve_or_reject(sync_api: Api, cloud: Cloud) -> None:
    s = await small(sync_api, cloud)
    ids = [new_user(s, f"u{i}") for i in range(4)]
    await s.put_rules("deletion-guard", {"enabled": True, "max_deletions": 2})
    await s.put_rules("user-sync", {"enabled": True})
    await s.run_worker()
    for uid in ids[:3]:
        s.control("DELETE", f"/users/{uid}")
    extra = new_user(s, "newbie")
    held = await s.sync()
    assert held["status"] == "held"
    assert sorted(e["entra_id"] for e in held["held"]["extensions"]) == sorted(ids[:3])
    synced = await s.synced()
    assert extra in synced and all(
        uid in synced for uid in ids[:3]
    )  # creates applied, deletions held
    integ = (await s.api.client.get("/api/v1/integration", headers=s.h)).json()
    assert integ["held_run_id"] == held["id"]

    # Approving puts the held run back in the queue; deletions grew since: the worker's run
    # ends failed with plan_stale and deletes nothing.
    s.control("DELETE", f"/users/{ids[3]}")
    stale = await s.api.client.post(f"/api/v1/sync-runs/{held['id']}/approve", headers=s.h)
    assert stale.status_code == 202, stale.text
    assert stale.json()["status"] == "queued" and stale.json()["held"]["decision"] == "approved"
    assert (await s.api.client.get("/api/v1/integration", headers=s.h)).json()[
        "held_run_id"
    ] is None
    [failed] = await s.run_worker()
    assert failed["id"] == held["id"] and failed["status"] == "failed"
    assert failed["error"]["code"] == "plan_stale"
    still = await s.synced()
    assert all(uid in still for uid in ids)  # nothing deleted

    # Rejecting drops the deletions.
    held1 = await s.sync()
    assert held1["status"] == "held" and len(held1["held"]["extensions"]) == 4
    rejected = await s.api.client.post(f"/api/v1/sync-runs/{held1['id']}/reject", headers=s.h)
    assert rejected.status_code == 200 and rejected.json()["held"]["decision"] == "rejected"
    assert (await s.api.client.get("/api/v1/integration", headers=s.h)).json()[
        "held_run_id"
    ] is None

    # A newer held run replaces an older one; a run already waiting folds into the approved
    # one; the worker deletes exactly what was held.
    s.control(
        "POST",
        "/users",
        json={"userPrincipalName": f"back@{s.tenant.domain}", "displayName": "Back"},
    )
    held2 = await s.sync()
    assert held2["status"] == "held" and len(held2["held"]["extensions"]) == 4
    waiting = await s.api.client.post("/api/v1/integration/sync", json={}, headers=s.h)
    assert waiting.status_code == 202
    approved = await s.api.client.post(f"/api/v1/sync-runs/{held2['id']}/approve", headers=s.h)
    assert approved.status_code == 202 and approved.json()["status"] == "queued"
    folded = await s.run(waiting.json()["id"])
    assert folded["status"] == "cancelled" and folded["error"]["code"] == "folded"
    assert folded["error"]["run_id"] == held2["id"]
    [done] = await s.run_worker()
    assert done["id"] == held2["id"] and done["status"] == "succeeded"
    assert done["held"]["decision"] == "approved" and done["held"]["deleted"] == 4
    assert done["users"]["deleted"] == 4
    assert not set(ids) & set(await s.synced())
    again = await s.api.client.post(f"/api/v1/sync-runs/{held2['id']}/approve", headers=s.h)
    assert again.status_code == 409


async def test_max_percent_bound(sync_api: Api, cloud: Cloud) -> None:
    s = await small(sync_api, cloud)
    ids = [new_user(s, f"p{i}") for i in range(3)]
    await s.put_rules("deletion-guard", {"enabled": True, "max_deletions": 500, "max_percent": 30})
    await s.put_rules("user-sync", {"enabled": True})
    await s.run_worker()
    s.control("DELETE", f"/users/{ids[0]}")
    s.control("DELETE", f"/users/{ids[1]}")
    run = await s.sync()
    assert run["status"] == "held"


async def test_dry_run_applies_nothing(sync_api: Api, cloud: Cloud) -> None:
    s = await small(sync_api, cloud)
    await s.put_rules("user-sync", {"enabled": True})
    # A dry run never merges with the queued initial run.
    resp = await s.api.client.post("/api/v1/integration/sync", json={"dry_run": True}, headers=s.h)
    assert resp.status_code == 202 and resp.json()["dry_run"] is True
    first = await s.run_worker()
    assert [r["dry_run"] for r in first] == [False, True]
    uid = new_user(s, "dry")
    before = await s.extensions()
    dry = await s.sync(dry_run=True)
    assert [c["entra_id"] for c in dry["plan"]["users"]["creates"]] == [uid]
    assert dry["users"]["created"] == 1 and await s.extensions() == before
    changes = (
        await s.api.client.get(f"/api/v1/sync-runs/{dry['id']}/changes", headers=s.h)
    ).json()["items"]
    assert changes == []
    real = await s.sync()
    assert real["users"]["created"] == 1 and uid in await s.synced()


async def test_group_range_follows_membership_by_delta(sync_api: Api, cloud: Cloud) -> None:
    s = await small(sync_api, cloud)
    a, b, c = (new_user(s, n) for n in ("gwen", "gabe", "gina"))
    team = s.control(
        "POST",
        "/groups",
        json={"displayName": "Team", "securityEnabled": True, "mailEnabled": False},
    )["id"]
    s.control("POST", f"/groups/{team}/members", json={"id": a})
    await s.put_rules(
        "user-sync", {"enabled": True, "range": {"mode": "groups", "group_ids": [team]}}
    )
    await s.run_worker()
    assert set(await s.synced()) == {a}

    # Nothing changed: the run reads the deltas and expands nothing.
    s.cloud.clear_requests()
    await s.sync()
    paths = [r["path"] for r in s.cloud.requests("/v1.0/")]
    assert "/v1.0/groups/delta" in paths and not any("transitiveMembers" in p for p in paths)

    # A direct member joins: picked up from members@delta, without expanding the group.
    s.control("POST", f"/groups/{team}/members", json={"id": b})
    s.cloud.clear_requests()
    await s.sync()
    assert set(await s.synced()) == {a, b}
    assert not any("transitiveMembers" in r["path"] for r in s.cloud.requests("/v1.0/"))

    # A nested group joins: the range is expanded again and the new group is followed too.
    sub = s.control(
        "POST",
        "/groups",
        json={"displayName": "Sub", "securityEnabled": True, "mailEnabled": False},
    )["id"]
    s.control("POST", f"/groups/{sub}/members", json={"id": c})
    s.control("POST", f"/groups/{team}/members", json={"id": sub})
    await s.sync()
    assert set(await s.synced()) == {a, b, c}
    # ... so a change inside the nested group is seen next time.
    s.control("DELETE", f"/groups/{sub}/members/{c}")
    run = await s.sync()
    assert set(await s.synced()) == {a, b} and run["users"]["deleted"] == 1
