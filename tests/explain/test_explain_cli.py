"""`pbx-entra explain USER`: the steps as a table, from the shell, against the same database."""

from __future__ import annotations

import json

from tests.cli import run_cli
from tests.cloud import Cloud
from tests.conftest import Api
from tests.directory.test_extensions import make_ext
from tests.sync.test_user_rules import new_user, small


async def test_cli_explain_table_json_and_errors(
    sync_api: Api, cloud: Cloud, database_url: str
) -> None:
    s = await small(sync_api, cloud)
    await s.put_rules("user-sync", {"enabled": True})
    await s.run_worker()
    await make_ext(s.api, s.h, "1001", first_name="Manual")
    uid = new_user(s, "cli", displayName="Cli Tester")
    shown = await run_cli(
        database_url, cloud, "explain", f"cli@{s.tenant.domain}", "--pbx", s.pbx["name"]
    )
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert f"Cli Tester (cli@{s.tenant.domain})" in out
    for step in ("found", "section", "range", "enabled", "existing_extension", "email", "capacity"):
        assert step in out
    assert "1002: the first free number from 1000 (as of now)" in out
    assert "outcome: create, number 1002" in out
    assert "as of now: capacity, number" in out
    as_json = await run_cli(database_url, cloud, "explain", uid, "--pbx", s.pbx["name"], "--json")
    assert as_json.returncode == 0, as_json.stderr
    body = json.loads(as_json.stdout)
    assert body["outcome"]["action"] == "create" and body["user"]["id"] == uid
    assert uid not in await s.synced()  # nothing written
    missing = await run_cli(
        database_url, cloud, "explain", f"nobody@{s.tenant.domain}", "--pbx", s.pbx["name"]
    )
    assert missing.returncode == 1 and "user_not_found" in missing.stderr
    no_pbx = await run_cli(database_url, cloud, "explain", uid, "--pbx", "no-such-pbx")
    assert no_pbx.returncode == 2 and "no PBX named" in no_pbx.stderr
