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
