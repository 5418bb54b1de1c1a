"""`pbx-entra sync`: an operator runs a sync from the shell, against the same database."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.cloud import Cloud
from tests.conftest import SECRET_KEY, Api
from tests.sync.helpers import scenario
from tests.sync.test_user_rules import new_user


def _cli(database_url: str, cloud: Cloud, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SECRET_KEY": SECRET_KEY,
        "LOGIN_BASE_URL": cloud.base_url,
        "GRAPH_BASE_URL": f"{cloud.base_url}/v1.0",
        "CA_BUNDLE": str(cloud.emulator.ca_path),
        "COLUMNS": "160",
    }
    return subprocess.run(
        [sys.executable, "-m", "app", "sync", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_cli_sync_and_dry_run(sync_api: Api, cloud: Cloud, database_url: str) -> None:
    s = await scenario(sync_api, cloud, users=0, groups=0, seed=1)
    await s.put_rules("user-sync", {"enabled": True})
    await s.run_worker()
    uid = new_user(s, "cli")
    dry = _cli(database_url, cloud, "--pbx", s.pbx["name"], "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run" in dry.stderr and "users" in dry.stderr
    assert uid not in await s.synced()
    real = _cli(database_url, cloud, "--pbx", s.pbx["name"])
    assert real.returncode == 0, real.stderr
    assert "succeeded" in real.stderr or "partial" in real.stderr
    assert uid in await s.synced()
    missing = _cli(database_url, cloud, "--pbx", "no-such-pbx")
    assert missing.returncode == 2 and "no PBX named" in missing.stderr
