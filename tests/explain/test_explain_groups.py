"""Explain one group: type and range verdicts, the limit, its name, its members."""

from __future__ import annotations

from typing import Any

from tests.cloud import Cloud
from tests.conftest import Api
from tests.sync.helpers import Scenario
from tests.sync.test_group_sync import groups, new_group, setup
from tests.sync.test_user_rules import new_user


async def explain(s: Scenario, group: str, expect: int = 200) -> dict[str, Any]:
    resp = await s.api.client.get(
        "/api/v1/integration/group-sync/explain", params={"group": group}, headers=s.h
    )
    assert resp.status_code == expect, resp.text
    body: dict[str, Any] = resp.json()
    return body


def steps(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {st["step"]: st for st in body["steps"]}


async def test_group_explain_type_range_name_members_and_limit(sync_api: Api, cloud: Cloud) -> None:
    s, (a, b, c) = await setup(sync_api, cloud)
    nobody = new_user(s, "zed", accountEnabled=False)  # in Entra, without an extension
    await s.api.client.post(
        "/api/v1/extension-groups", json={"name": "Alpha", "member_ids": []}, headers=s.h
    )
    alpha = new_group(s, "Alpha", "security", [a, b, nobody])
    m365 = new_group(s, "Team", "microsoft365", [c])
    await s.put_rules(
        "group-sync", {"enabled": True, "range": {"mode": "types", "types": ["security"]}}
    )
    body = await explain(s, "Alpha")
    assert body["group"] == {
        "id": alpha,
        "display_name": "Alpha",
        "type": "security",
        "found": True,
    }
    assert [st["step"] for st in body["steps"]] == [
        "found",
        "section",
        "type",
        "range",
        "existing_group",
        "limit",
        "name",
        "members",
    ]
    st = steps(body)
    assert st["range"]["ok"] and "'security' is in the range" in st["range"]["detail"]
    assert st["limit"]["detail"] == "1 of 63 extension groups in use (as of now)."
    assert st["name"]["detail"] == "Named 'Alpha (2)': 'Alpha' is taken."
    assert body["members"] == {
        "with_extension": 2,
        "skipped": 1,
        "with_extension_first": sorted(["Ann Tester", "Bob Tester"]),
        "skipped_first": ["Zed"],
    }
    assert body["outcome"] == {
        "action": "create",
        "code": None,
        "extension_group_id": None,
        "name": "Alpha (2)",
        "members_added": 2,
        "members_removed": 0,
        "planned": None,
    }
    team = await explain(s, m365)
    assert steps(team)["type"]["detail"] == "Group type: microsoft365."
    assert steps(team)["range"]["ok"] is False and team["outcome"]["action"] == "nothing"
    # The sync agrees.
    await s.run_worker()
    got = await groups(s)
    assert got["Alpha (2)"]["users"] == {a, b} and "Team" not in got
    synced = await explain(s, alpha)
    assert synced["outcome"]["action"] == "nothing"
    assert "follows this group" in steps(synced)["existing_group"]["detail"]
    await explain(s, "No Such Group", expect=404)
    assert (await explain(s, "00000000-0000-0000-0000-00000000000f", expect=404))[
        "code"
    ] == "group_not_found"


async def test_group_limit_and_pause(sync_api: Api, cloud: Cloud) -> None:
    s, (a, _, _) = await setup(sync_api, cloud)
    await s.api.client.patch(
        f"/api/v1/pbxes/{s.pbx['id']}", json={"max_extension_groups": 1}, headers=s.api.operator
    )
    first = new_group(s, "First", "security", [a])
    await s.put_rules("group-sync", {"enabled": True})
    await s.run_worker()
    second = new_group(s, "Second", "security", [a])
    body = await explain(s, second)
    assert steps(body)["limit"] == {
        "step": "limit",
        "ok": False,
        "detail": "1 of 1 extension groups in use.",
        "code": "group_limit_reached",
    }
    assert body["outcome"]["action"] == "fail" and body["outcome"]["code"] == "group_limit_reached"
    run = await s.sync(scopes=["groups"])
    assert (second, "group_limit_reached") in [(f["source_id"], f["code"]) for f in run["failures"]]
    assert (await explain(s, second))["outstanding_failure"]["code"] == "group_limit_reached"
    # A deleted group with its extension group: deleted by the next run.
    s.control("DELETE", f"/groups/{first}")
    gone = await explain(s, first)
    assert gone["group"]["found"] is False and gone["outcome"]["action"] == "delete"
    paused = await s.api.client.post(
        "/api/v1/integration/group-sync/pause", json={"delete_extension_groups": False}, headers=s.h
    )
    assert paused.status_code == 200
    body = await explain(s, second)
    assert steps(body)["section"]["code"] == "sync_paused"
    assert body["outcome"]["action"] == "nothing" and body["outcome"]["code"] == "sync_paused"
