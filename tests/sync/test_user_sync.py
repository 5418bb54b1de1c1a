"""User synchronization against the emulator, through the public API, on both databases."""

from __future__ import annotations

from typing import Any

from app.sync.plan_users import desired_fields
from app.sync.users_model import EntraUser
from tests.cloud import Cloud
from tests.conftest import Api
from tests.sync.helpers import scenario

USER_SYNC = {"enabled": True}


def _expected(users: dict[str, Any], member_only: bool = True) -> dict[str, Any]:
    return {
        uid: u
        for uid, u in users.items()
        if u.account_enabled
        and u.deleted_at is None
        and (not member_only or u.user_type == "Member")
    }


async def test_initial_sync_creates_extensions_for_enabled_members(
    sync_api: Api, cloud: Cloud
) -> None:
    s = await scenario(sync_api, cloud, users=40, groups=3, seed=11)
    saved = await s.put_rules(
        "user-sync", {"enabled": True, "range": {"mode": "user_types", "user_types": ["member"]}}
    )
    assert saved["state"] == "active" and saved["initial_run_id"]
    [run] = await s.run_worker()
    assert run["trigger"] == "initial" and run["id"] == saved["initial_run_id"]
    expected = _expected(s.users())
    synced = await s.synced()
    # Users without any name fail; of two addresses differing only in case, the second fails.
    failing: dict[str, str] = {}
    emails: set[str] = set()
    for uid in sorted(expected):
        u = expected[uid]
        if not (u.given_name or u.surname or u.display_name):
            failing[uid] = "missing_required_field"
            continue
        email = (
            u.mail or ("" if "#EXT#" in u.user_principal_name else u.user_principal_name)
        ).lower()
        if email and email in emails:
            failing[uid] = "email_taken"
        emails.add(email)
    assert set(synced) == set(expected) - set(failing)
    assert {f["source_id"]: f["code"] for f in run["failures"]} == failing
    assert run["status"] == ("partial" if failing else "succeeded")
    assert run["users"]["created"] == len(synced) and run["users"]["failed"] == len(failing)
    numbers = sorted(int(e["number"]) for e in synced.values())
    assert numbers == list(range(1000, 1000 + len(synced)))
    for uid, ext in synced.items():
        u = expected[uid]
        want = desired_fields(
            EntraUser(
                uid,
                u.display_name,
                u.given_name,
                u.surname,
                u.mail,
                u.user_principal_name,
                u.user_type,
                True,
                u.mobile_phone,
                u.job_title,
                None,
            )
        )
        assert want is not None
        assert {k: ext[k] for k in want} == want
    assert run["graph_requests"] >= 2


async def test_second_run_is_incremental_and_touches_only_changes(
    sync_api: Api, cloud: Cloud
) -> None:
    s = await scenario(sync_api, cloud, users=30, groups=2, seed=5)
    await s.put_rules("user-sync", USER_SYNC)
    await s.run_worker()
    before = await s.synced()
    target = sorted(before)[0]
    s.control("PATCH", f"/users/{target}", json={"jobTitle": "Chief Listener"})
    s.cloud.clear_requests()
    run = await s.sync()
    assert run["status"] in ("succeeded", "partial")
    assert run["users"]["updated"] == 1 and run["users"]["created"] == 0
    after = await s.synced()
    assert after[target]["job_title"] == "Chief Listener"
    assert {k: v["updated_at"] for k, v in after.items() if k != target} == {
        k: v["updated_at"] for k, v in before.items() if k != target
    }
    paths = [r["path"] for r in s.cloud.requests("/v1.0/")]
    assert any(p.endswith("/users/delta") for p in paths)
    assert not any(p.endswith("/v1.0/users") for p in paths)
    changes = (
        await s.api.client.get(f"/api/v1/sync-runs/{run['id']}/changes", headers=s.h)
    ).json()["items"]
    assert [(c["action"], c["entra_id"]) for c in changes] == [("update", target)]
    assert changes[0]["fields"]["job_title"][1] == "Chief Listener"
