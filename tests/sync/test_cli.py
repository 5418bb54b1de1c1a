"""`pbx-entra sync`: an operator runs a sync from the shell, against the same database."""

from __future__ import annotations

from tests.cli import run_cli
from tests.cloud import Cloud
from tests.conftest import Api
from tests.sync.helpers import scenario
from tests.sync.test_user_rules import new_user


async def test_cli_sync_and_dry_run(sync_api: Api, cloud: Cloud, database_url: str) -> None:
    s = await scenario(sync_api, cloud, users=0, groups=0, seed=1)
    await s.put_rules("user-sync", {"enabled": True})
    await s.run_worker()
    uid = new_user(s, "cli")
    dry = await run_cli(database_url, cloud, "sync", "--pbx", s.pbx["name"], "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run" in dry.stderr and "users" in dry.stderr
    assert uid not in await s.synced()
    real = await run_cli(database_url, cloud, "sync", "--pbx", s.pbx["name"])
    assert real.returncode == 0, real.stderr
    assert "succeeded" in real.stderr or "partial" in real.stderr
    assert uid in await s.synced()
    missing = await run_cli(database_url, cloud, "sync", "--pbx", "no-such-pbx")
    assert missing.returncode == 2 and "no PBX named" in missing.stderr
