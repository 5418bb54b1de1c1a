"""`make run`'s command: the emulator as a demo tenant, the service connected and synced."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from app.demo import DEMO_PBX_KEY
from tests.conftest import free_port


def test_demo_starts_connected_and_synced(tmp_path: Path) -> None:
    port, emulator_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app",
            "demo",
            "--port",
            str(port),
            "--emulator-port",
            str(emulator_port),
        ],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        stderr=subprocess.PIPE,
        text=True,
    )
    headers = {"Authorization": f"Bearer {DEMO_PBX_KEY}"}
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        body: dict[str, object] = {}
        while time.monotonic() < deadline:
            assert proc.poll() is None, "the demo exited early"
            try:
                runs = httpx.get(f"{base}/api/v1/sync-runs", headers=headers, timeout=5).json()[
                    "items"
                ]
                if runs and runs[0]["status"] not in ("queued", "running"):
                    body = httpx.get(
                        f"{base}/api/v1/integration", headers=headers, timeout=5
                    ).json()
                    break
            except (httpx.HTTPError, KeyError):
                pass
            time.sleep(0.5)
        assert body.get("status") == "connected"
        assert body["user_sync"]["state"] == "active"
        extensions = httpx.get(
            f"{base}/api/v1/extensions", headers=headers, params={"managed_by": "entra"}
        ).json()
        assert len(extensions["items"]) > 50
        assert httpx.get(f"{base}/docs").status_code == 200
        assert (tmp_path / "var" / "pbx-entra.db").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert f"{base}/docs" in err and DEMO_PBX_KEY in err
    # Ctrl+C: a graceful shutdown, then the conventional exit status of SIGINT.
    assert proc.returncode in (0, 130, -signal.SIGINT)
