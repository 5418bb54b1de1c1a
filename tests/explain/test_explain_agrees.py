"""Property: for a user that is the only pending creation, the explain outcome is what the next
sync run does to that user — random tenants and rules, against the emulator, both databases."""

from __future__ import annotations

import itertools
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cloud import Cloud
from tests.conftest import Api
from tests.directory.test_extensions import make_ext
from tests.sync.helpers import Scenario
from tests.sync.test_user_rules import new_user, small

RULES = st.fixed_dictionaries(
    {
        "range": st.sampled_from(["all", "member", "member+guest", "groups"]),
        "number": st.sampled_from(["auto:1000", "auto:0100", "auto:2000", "property"]),
        "delete_when": st.sets(st.sampled_from(["disabled", "deleted"])),
        "associate_by_email": st.booleans(),
        "auto_delete_out_of_range": st.booleans(),
        "full_pbx": st.booleans(),
    }
)
TARGET = st.fixed_dictionaries(
    {
        "user_type": st.sampled_from(["Member", "Guest"]),
        "enabled": st.booleans(),
        "named": st.booleans(),
        "phone": st.sampled_from([None, "+1 425 555 0100", "x{n}", "{n}"]),
        "in_group": st.booleans(),
        "manual": st.sampled_from([None, "same_email", "same_number", "near_start"]),
        "history": st.sampled_from(
            [None, "job_title", "disable", "delete", "soft_delete", "to_guest", "leave_group"]
        ),
    }
)
_STATE: dict[int, tuple[Scenario, str, list[str]]] = {}
_COUNTER = itertools.count(1)


async def _scenario(api: Api, cloud: Cloud) -> tuple[Scenario, str, list[str]]:
    if id(api) not in _STATE:
        s = await small(api, cloud)
        group = s.control(
            "POST",
            "/groups",
            json={"displayName": "Range", "securityEnabled": True, "mailEnabled": False},
        )["id"]
        _STATE.clear()
        _STATE[id(api)] = (s, str(group), [])
    return _STATE[id(api)]


def _rules_body(rules: dict[str, Any], group: str) -> dict[str, Any]:
    range_: dict[str, Any] = {
        "all": {"mode": "all"},
        "member": {"mode": "user_types", "user_types": ["member"]},
        "member+guest": {"mode": "user_types", "user_types": ["member", "guest"]},
        "groups": {"mode": "groups", "group_ids": [group]},
    }[rules["range"]]
    if rules["number"] == "property":
        number: dict[str, Any] = {"mode": "property", "property": "businessPhones"}
    else:
        number = {"mode": "auto", "start": rules["number"].split(":")[1]}
    return {
        "enabled": True,
        "range": range_,
        "number": number,
        "delete_when": sorted(rules["delete_when"]),
        "associate_by_email": rules["associate_by_email"],
        "auto_delete_out_of_range": rules["auto_delete_out_of_range"],
    }


async def _what_the_run_did(s: Scenario, run: dict[str, Any], uid: str) -> dict[str, Any]:
    resp = await s.api.client.get(f"/api/v1/sync-runs/{run['id']}/changes", headers=s.h)
    mine = [c for c in resp.json()["items"] if c["entra_id"] == uid]
    failed = [f["code"] for f in run["failures"] if f["source_id"] == uid]
    if failed:
        return {"action": "fail", "code": failed[0]}
    if not mine:
        return {"action": "nothing"}
    [change] = mine
    did: dict[str, Any] = {"action": change["action"]}
    if change["action"] == "create":
        did["number"] = change["fields"]["number"][1]
    if change["action"] == "update":
        did["fields"] = {k: v for k, v in change["fields"].items() if k != "managed_by"}
    return did


def _expected(answer: dict[str, Any]) -> dict[str, Any]:
    o = answer["outcome"]
    want: dict[str, Any] = {"action": o["action"]}
    if o["action"] == "fail":
        want["code"] = o["code"]
    if o["action"] == "create":
        want["number"] = o["number"]
    if o["action"] == "update":
        want["fields"] = o["fields"]
    return want


@settings(
    # A bounded number in the suite; EXPLAIN_EXAMPLES=500 for a long run.
    max_examples=int(os.environ.get("EXPLAIN_EXAMPLES", "15")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rules=RULES, target=TARGET)
async def test_explain_outcome_is_what_the_next_run_does(
    sync_api: Api, cloud: Cloud, rules: dict[str, Any], target: dict[str, Any]
) -> None:
    s, group, earlier = await _scenario(sync_api, cloud)
    n = next(_COUNTER)
    # Settle: earlier examples' users leave, the rules change, one run applies all that.
    for uid in earlier:
        s.cloud.control.request("DELETE", f"/tenants/{s.tid}/users/{uid}")
    earlier.clear()
    await s.api.client.patch(
        f"/api/v1/pbxes/{s.pbx['id']}", json={"max_extensions": 1000}, headers=s.api.operator
    )
    await s.put_rules("user-sync", _rules_body(rules, group))
    await s.sync()
    local = f"t{n}x{len(_STATE)}"
    number = str(3000 + n)
    phone = target["phone"].format(n=number) if target["phone"] else None
    props: dict[str, Any] = {"userType": target["user_type"], "accountEnabled": target["enabled"]}
    if not target["named"]:
        props.update(displayName="", givenName="", surname="")
    if phone:
        props["businessPhones"] = [phone]
    uid = new_user(s, local, **props)
    earlier.append(uid)
    if target["in_group"]:
        s.control("POST", f"/groups/{group}/members", json={"id": uid})
    if target["history"] is not None:
        # The user was synced (or failed) before, then changed.
        await s.sync()
        history = target["history"]
        if history == "job_title":
            s.control("PATCH", f"/users/{uid}", json={"jobTitle": f"Title {n}"})
        elif history == "disable":
            s.control("POST", f"/users/{uid}/disable")
        elif history == "delete":
            s.control("DELETE", f"/users/{uid}")
        elif history == "soft_delete":
            s.control("POST", f"/users/{uid}/soft-delete")
        elif history == "to_guest":
            s.control("PATCH", f"/users/{uid}", json={"userType": "Guest"})
        elif history == "leave_group" and target["in_group"]:
            s.control("DELETE", f"/groups/{group}/members/{uid}")
    extensions = await s.extensions()
    emails = {(e["email"] or "").lower() for e in extensions}
    numbers = {e["number"] for e in extensions}
    email = f"{local}@{s.tenant.domain}"
    if target["manual"] == "same_email" and email.lower() not in emails:
        await make_ext(s.api, s.h, f"8{n:04d}", email=email)
    elif target["manual"] == "same_number" and number not in numbers:
        await make_ext(s.api, s.h, number)
    elif target["manual"] == "near_start":
        start = rules["number"].split(":")[-1] if rules["number"] != "property" else "1000"
        free = str(int(start) + 1).zfill(len(start))
        if free not in numbers:
            await make_ext(s.api, s.h, free)
    if rules["full_pbx"]:
        count = len(await s.extensions())
        await s.api.client.patch(
            f"/api/v1/pbxes/{s.pbx['id']}", json={"max_extensions": count}, headers=s.api.operator
        )
    resp = await s.api.client.get(
        "/api/v1/integration/user-sync/explain", params={"user": uid}, headers=s.h
    )
    run = await s.sync()
    assert run["status"] in ("succeeded", "partial"), run["error"]
    did = await _what_the_run_did(s, run, uid)
    after = await s.api.client.get(
        "/api/v1/integration/user-sync/explain", params={"user": uid}, headers=s.h
    )
    recorded = after.json()["outstanding_failure"] if after.status_code == 200 else None
    if did == {"action": "nothing"} and recorded is not None:
        # Not re-read by an incremental run (only Entra can fix it), still failing as recorded.
        did = {"action": "fail", "code": recorded["code"]}
    if resp.status_code == 404:
        assert resp.json()["code"] == "user_not_found"
        assert did == {"action": "nothing"}, (rules, target, did)
        return
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert _expected(answer) == did, (rules, target, answer["steps"])
    # Explain after the run: nothing left to do for this user, or the same failure.
    if did["action"] == "fail":
        assert after.json()["outcome"] == {**after.json()["outcome"], **did}
    elif did["action"] != "delete":
        assert after.json()["outcome"]["action"] == "nothing", after.json()["steps"]
