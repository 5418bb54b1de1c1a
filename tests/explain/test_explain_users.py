"""Explain one user, rule by rule, against the emulator, on both databases."""

from __future__ import annotations

from typing import Any

from tests.cloud import Cloud
from tests.conftest import Api
from tests.directory.test_extensions import make_ext
from tests.sync.helpers import Scenario
from tests.sync.test_user_rules import new_user, small


async def explain(s: Scenario, user: str, expect: int = 200) -> dict[str, Any]:
    resp = await s.api.client.get(
        "/api/v1/integration/user-sync/explain", params={"user": user}, headers=s.h
    )
    assert resp.status_code == expect, resp.text
    body: dict[str, Any] = resp.json()
    return body


def steps(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["step"]: s for s in body["steps"]}


def order(body: dict[str, Any]) -> list[str]:
    return [s["step"] for s in body["steps"]]


async def test_new_user_is_created_with_the_first_free_number(sync_api: Api, cloud: Cloud) -> None:
    s = await small(sync_api, cloud)
    await s.put_rules(
        "user-sync", {"enabled": True, "range": {"mode": "user_types", "user_types": ["member"]}}
    )
    await s.run_worker()
    await make_ext(s.api, s.h, "1001", first_name="Manual")
    uid = new_user(s, "bob", jobTitle="Sales")
    s.cloud.clear_requests()
    body = await explain(s, uid)
    assert body["user"]["id"] == uid and body["user"]["found"] is True
    assert order(body) == [
        "found",
        "section",
        "user_type",
        "enabled",
        "existing_extension",
        "email",
        "capacity",
        "number",
    ]
    assert all(st["ok"] for st in body["steps"])
    st = steps(body)
    assert "'member' is in the range" in st["user_type"]["detail"]
    # 1000 is the admin's, 1001 the manual one: the scan goes on to 1002.
    assert st["number"]["detail"].startswith("1002: the first free number from 1000")
    assert st["capacity"]["detail"].startswith("2 of 1000")
    outcome = body["outcome"]
    assert outcome["action"] == "create" and outcome["number"] == "1002"
    assert outcome["fields"]["job_title"] == [None, "Sales"]
    assert body["outstanding_failure"] is None
    assert set(body["as_of_now"]) == {"number", "capacity"}
    # One Graph read for the user, nothing written.
    graph = [r for r in s.cloud.requests("/v1.0/") if "/users" in r["path"]]
    assert len(graph) == 1 and graph[0]["path"].endswith(f"/users/{uid}")
    assert uid not in await s.synced()
    # The sync does what explain said.
    run = await s.sync()
    assert run["users"]["created"] == 1
    assert (await s.synced())[uid]["number"] == "1002"


async def test_lookup_by_upn_and_mail_and_update_fields(sync_api: Api, cloud: Cloud) -> None:
    s = await small(sync_api, cloud)
    uid = new_user(s, "carol", mail=f"carol.work@{s.tenant.domain}")
    await s.put_rules("user-sync", {"enabled": True})
    await s.run_worker()
    number = (await s.synced())[uid]["number"]
    s.control("PATCH", f"/users/{uid}", json={"jobTitle": "Boss"})
    for query in (uid, f"carol@{s.tenant.domain}", f"Carol.Work@{s.tenant.domain}"):
        body = await explain(s, query)
        assert body["user"]["id"] == uid
        assert body["outcome"]["action"] == "update"
        assert body["outcome"]["fields"] == {"job_title": [None, "Boss"]}
        assert steps(body)["existing_extension"]["detail"].startswith(f"Extension {number} follows")
    await explain(s, f"nobody@{s.tenant.domain}", expect=404)
    missing = await explain(s, "00000000-0000-0000-0000-000000000001", expect=404)
    assert missing["code"] == "user_not_found"


async def _agree(s: Scenario, uid: str, code: str) -> None:
    """Explain says `fail` with `code`; the sync fails the user with that code, and explain
    then shows it as the outstanding failure."""
    body = await explain(s, uid)
    assert body["outcome"] == {**body["outcome"], "action": "fail", "code": code}
    failing = [st for st in body["steps"] if not st["ok"]]
    assert [st["code"] for st in failing] == [code]
    run = await s.sync()
    assert (uid, code) in [(f["source_id"], f["code"]) for f in run["failures"]]
    again = await explain(s, uid)
    assert again["outstanding_failure"]["code"] == code
    assert again["outstanding_failure"]["first_failed_at"]


async def test_every_failure_code(sync_api: Api, cloud: Cloud) -> None:
    s = await small(sync_api, cloud)
    await s.put_rules(
        "user-sync",
        {"enabled": True, "number": {"mode": "property", "property": "businessPhones"}},
    )
    await s.run_worker()
    await make_ext(s.api, s.h, "4321", first_name="Holder", last_name="Of4321")
    await make_ext(s.api, s.h, "500", first_name="Has", email=f"dup@{s.tenant.domain}")
    taken = new_user(s, "tia", businessPhones=["+1 425 555 0100 x4321"])
    await _agree(s, taken, "extension_number_taken")
    detail = steps(await explain(s, taken))["number"]["detail"]
    assert "4321" in detail and "Holder Of4321" in detail
    invalid = new_user(s, "ivy", businessPhones=["+1 425 555 0100"])
    await _agree(s, invalid, "extension_number_invalid")
    empty = new_user(s, "eve")
    await _agree(s, empty, "missing_required_field")
    assert steps(await explain(s, empty))["number"]["detail"] == "businessPhones is empty."
    nameless = new_user(s, "nil", displayName="", givenName="", surname="", businessPhones=["x600"])
    await _agree(s, nameless, "missing_required_field")
    assert steps(await explain(s, nameless))["name"]["ok"] is False
    dup = new_user(s, "dup", businessPhones=["x700"])
    await _agree(s, dup, "email_taken")
    assert "Extension 500 already uses" in steps(await explain(s, dup))["email"]["detail"]
    await s.api.client.patch(
        f"/api/v1/pbxes/{s.pbx['id']}", json={"max_extensions": 3}, headers=s.api.operator
    )
    full = new_user(s, "ful", businessPhones=["x800"])
    await _agree(s, full, "capacity_exceeded")
    assert steps(await explain(s, full))["capacity"]["detail"] == "3 of 3 extensions in use."


async def test_association_by_email_and_former_id(sync_api: Api, cloud: Cloud) -> None:
    s = await small(sync_api, cloud)
    await s.put_rules("user-sync", {"enabled": True, "associate_by_email": True})
    await s.run_worker()
    manual = await make_ext(s.api, s.h, "777", first_name="Old", email=f"amy@{s.tenant.domain}")
    amy = new_user(s, "amy")
    body = await explain(s, amy)
    assert body["outcome"]["action"] == "update" and body["outcome"]["associate"] is True
    assert body["outcome"]["extension_id"] == manual["id"]
    assert body["outcome"]["fields"]["first_name"] == ["Old", "Amy"]
    assert "associated (associate_by_email)" in steps(body)["existing_extension"]["detail"]
    run = await s.sync()
    assert run["users"]["associated"] == 1


async def test_blocked_sections_still_answer(sync_api: Api, cloud: Cloud) -> None:
    s = await small(sync_api, cloud)
    await s.put_rules("user-sync", {"enabled": True})
    await s.run_worker()
    uid = new_user(s, "pam")
    paused = await s.api.client.post(
        "/api/v1/integration/user-sync/pause", json={"delete_extensions": False}, headers=s.h
    )
    assert paused.status_code == 200
    body = await explain(s, uid)
    assert steps(body)["section"] == {
        "step": "section",
        "ok": False,
        "detail": "User sync is paused.",
        "code": "sync_paused",
    }
    assert body["outcome"]["action"] == "nothing" and body["outcome"]["code"] == "sync_paused"
    assert body["outcome"]["planned"] == "create"
    await s.api.client.post("/api/v1/integration/user-sync/resume", headers=s.h)
    disabled = await s.api.client.post(
        "/api/v1/integration/disable", json={"delete_extensions": False}, headers=s.h
    )
    assert disabled.status_code in (200, 202), disabled.text
    body = await explain(s, uid)
    assert steps(body)["section"]["code"] == "integration_disabled"
    assert body["outcome"]["code"] == "integration_disabled"
    enabled = await s.api.client.post("/api/v1/integration/enable", headers=s.h)
    assert enabled.status_code in (200, 202), enabled.text
    await s.run_worker()
    assert (await explain(s, uid))["outcome"]["action"] == "nothing"  # synced by the resync
    # A held run.
    doomed = [new_user(s, f"d{i}") for i in range(3)]
    await s.sync()
    await s.put_rules("deletion-guard", {"enabled": True, "max_deletions": 1})
    for d in doomed[:2]:
        s.control("DELETE", f"/users/{d}")
    held = await s.sync()
    assert held["status"] == "held"
    body = await explain(s, doomed[2])
    assert (
        steps(body)["section"]["code"] == "run_held"
        and held["id"] in steps(body)["section"]["detail"]
    )
    assert body["outcome"] == {**body["outcome"], "action": "nothing", "code": "run_held"}


async def test_deleted_user_with_an_extension(sync_api: Api, cloud: Cloud) -> None:
    s = await small(sync_api, cloud)
    gone = new_user(s, "gil")
    soft = new_user(s, "sol")
    await s.put_rules("user-sync", {"enabled": True, "delete_when": ["deleted"]})
    await s.run_worker()
    ext = (await s.synced())[gone]
    s.control("DELETE", f"/users/{gone}")
    s.control("POST", f"/users/{soft}/soft-delete")
    body = await explain(s, gone)
    assert body["user"] == {
        "id": gone,
        "user_principal_name": None,
        "display_name": None,
        "account_enabled": None,
        "user_type": None,
        "found": False,
    }
    assert order(body) == ["found", "section", "existing_extension", "delete_rules"]
    assert steps(body)["found"]["ok"] is False
    assert body["outcome"] == {
        **body["outcome"],
        "action": "delete",
        "extension_id": ext["id"],
        "number": ext["number"],
    }
    # By the address the extension still carries, too.
    assert (await explain(s, f"gil@{s.tenant.domain}"))["outcome"]["action"] == "delete"
    assert (await explain(s, soft))["outcome"]["action"] == "delete"
    await s.put_rules("user-sync", {"enabled": True, "delete_when": []})
    assert (await explain(s, gone))["outcome"]["action"] == "release"
    await s.sync()
    released = [e for e in await s.extensions(managed_by="pbx") if e["former_entra_id"] == gone]
    assert len(released) == 1
    # Released: an extension still refers to the user, so the answer is "nothing", not 404.
    after = await explain(s, gone)
    assert after["outcome"]["action"] == "nothing"
    assert after["steps"][-1]["detail"] == "Gone from Entra, and no extension: nothing to do."


async def test_disabled_and_out_of_range_users(sync_api: Api, cloud: Cloud) -> None:
    s = await small(sync_api, cloud)
    off = new_user(s, "oli")
    guest = new_user(s, "gus")
    await s.put_rules(
        "user-sync",
        {
            "enabled": True,
            "range": {"mode": "user_types", "user_types": ["member"]},
            "delete_when": ["disabled"],
        },
    )
    await s.run_worker()
    s.control("POST", f"/users/{off}/disable")
    s.control("PATCH", f"/users/{guest}", json={"userType": "Guest"})
    body = await explain(s, off)
    assert steps(body)["enabled"]["ok"] is False
    assert body["outcome"]["action"] == "delete"
    assert "'disabled' is in delete_when" in steps(body)["delete_rules"]["detail"]
    body = await explain(s, guest)
    assert steps(body)["user_type"]["ok"] is False
    assert body["outcome"]["action"] == "delete"
    assert "auto delete on" in steps(body)["delete_rules"]["detail"]
    never = new_user(s, "nev", accountEnabled=False)
    body = await explain(s, never)
    assert body["outcome"]["action"] == "nothing"
    assert "never gets a new extension" in steps(body)["delete_rules"]["detail"]


async def test_group_range_names_the_groups(sync_api: Api, cloud: Cloud) -> None:
    s = await small(sync_api, cloud)
    inside, outside = new_user(s, "ina"), new_user(s, "oto")
    outer = s.control(
        "POST",
        "/groups",
        json={"displayName": "Sales", "securityEnabled": True, "mailEnabled": False},
    )["id"]
    inner = s.control(
        "POST",
        "/groups",
        json={"displayName": "Sales EU", "securityEnabled": True, "mailEnabled": False},
    )["id"]
    s.control("POST", f"/groups/{outer}/members", json={"id": inner})
    s.control("POST", f"/groups/{inner}/members", json={"id": inside})
    await s.put_rules(
        "user-sync", {"enabled": True, "range": {"mode": "groups", "group_ids": [outer]}}
    )
    s.cloud.clear_requests()
    body = await explain(s, inside)
    assert steps(body)["groups"] == {
        "step": "groups",
        "ok": True,
        "detail": "In range through group 'Sales' (transitive).",
        "code": None,
    }
    paths = [r["path"] for r in s.cloud.requests("/v1.0/users")]
    assert len(paths) == 2 and paths[1].endswith("/transitiveMemberOf/microsoft.graph.group")
    body = await explain(s, outside)
    assert steps(body)["groups"]["ok"] is False and body["outcome"]["action"] == "nothing"
    # A synced member deleted from Entra: explain and the (incremental) run agree on delete.
    await s.run_worker()
    assert inside in await s.synced()
    s.control("DELETE", f"/users/{inside}")
    assert (await explain(s, inside))["outcome"]["action"] == "delete"
    run = await s.sync()
    assert run["status"] == "succeeded", run["error"]
    assert run["users"]["deleted"] == 1 and inside not in await s.synced()
