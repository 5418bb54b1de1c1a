"""User sync rules end to end, as the guide states them: disabled users, the All Users range with
members and guests, and a user refused for a taken email address synced once it is free."""

from __future__ import annotations

from tests.cloud import Cloud
from tests.conftest import Api
from tests.directory.test_extensions import make_ext
from tests.sync.test_group_sync import changes
from tests.sync.test_user_rules import new_user, small


async def test_disabled_user_extension_deleted_with_the_option(sync_api: Api, cloud: Cloud) -> None:
    s = await small(sync_api, cloud)
    dora = new_user(s, "dora")
    eve = new_user(s, "eve")
    await s.put_rules("user-sync", {"enabled": True, "delete_when": ["disabled"]})
    await s.run_worker()
    assert {dora, eve} <= set(await s.synced())
    s.control("POST", f"/users/{dora}/disable")
    run = await s.sync()
    assert run["status"] == "succeeded" and run["users"]["deleted"] == 1
    everyone = await s.extensions()
    assert dora not in {e["entra_user_id"] for e in everyone}
    assert dora not in {e["former_entra_id"] for e in everyone}
    assert eve in await s.synced()
    assert [(c["action"], c["entra_id"]) for c in await changes(s, run["id"])] == [("delete", dora)]


async def test_disabled_user_extension_kept_and_updated_without_the_option(
    sync_api: Api, cloud: Cloud
) -> None:
    s = await small(sync_api, cloud)
    dora = new_user(s, "dora", jobTitle="Sales")
    await s.put_rules("user-sync", {"enabled": True, "delete_when": ["deleted"]})
    await s.run_worker()
    s.control("POST", f"/users/{dora}/disable")
    s.control("PATCH", f"/users/{dora}", json={"jobTitle": "On leave"})
    run = await s.sync()
    assert run["users"]["deleted"] == 0 and run["users"]["updated"] == 1
    kept = (await s.synced())[dora]
    assert kept["managed_by"] == "entra" and kept["job_title"] == "On leave"


async def test_all_users_range_syncs_members_and_guests(sync_api: Api, cloud: Cloud) -> None:
    s = await small(sync_api, cloud)
    member = new_user(s, "mia", userType="Member")
    guest = new_user(s, "gil", userType="Guest")
    saved = await s.put_rules("user-sync", {"enabled": True, "range": {"mode": "all"}})
    assert saved["range"]["mode"] == "all"
    await s.run_worker()
    assert set(await s.synced()) == {s.tenant.admin_id, member, guest}
    # The guest was there because of "All Users": members only drops it.
    await s.put_rules(
        "user-sync", {"enabled": True, "range": {"mode": "user_types", "user_types": ["member"]}}
    )
    run = await s.sync()
    assert run["users"]["deleted"] == 1
    assert set(await s.synced()) == {s.tenant.admin_id, member}


async def test_email_taken_user_is_synced_once_the_address_is_free(
    sync_api: Api, cloud: Cloud
) -> None:
    s = await small(sync_api, cloud)
    amy = new_user(s, "amy", mail=f"amy@{s.tenant.domain}")
    holder = await make_ext(s.api, s.h, "777", first_name="Old", email=f"amy@{s.tenant.domain}")
    await s.put_rules("user-sync", {"enabled": True, "associate_by_email": False})
    [run] = await s.run_worker()
    assert [(f["source_id"], f["code"]) for f in run["failures"]] == [(amy, "email_taken")]
    assert amy not in await s.synced()
    # The manual extension gives the address up; nothing changes in Entra.
    freed = await s.api.client.patch(
        f"/api/v1/extensions/{holder['id']}", json={"email": "old@example.com"}, headers=s.h
    )
    assert freed.status_code == 200
    retry = await s.sync()
    assert retry["failures"] == [] and retry["users"]["created"] == 1
    synced = (await s.synced())[amy]
    assert synced["email"] == f"amy@{s.tenant.domain}" and synced["id"] != holder["id"]
