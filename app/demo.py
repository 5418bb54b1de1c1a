"""`make run`: the service on SQLite with the emulator as a demo tenant, connected and synced.

It starts the emulator (a child process), then the service, then walks the same public API a PBX
portal would: save the app registration, follow the consent (the demo tenant consents on its own),
and turn user sync on. Everything it prints is for a local demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import os
import re
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

console = Console(stderr=True, soft_wrap=True)
DEMO_PBX_KEY = "pbx_demo_key_for_local_use_only_000000000"
DEMO_ADMIN_KEY = "admin_demo_key_for_local_use_only_0000000"
_HIDDEN = re.compile(
    r"<input type=['\"]hidden['\"] name=['\"]([^'\"]+)['\"] value=['\"]([^'\"]*)['\"]"
)


def start_emulator(
    state_dir: Path, port: int, *options: str, timeout: float = 60, quiet: bool = False
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """The emulator with its demo tenant in a child process; (process, demo.json) once it answers."""
    demo_file = state_dir / "demo.json"
    demo_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "emulator", "--port", str(port), "--state", str(state_dir)]
    output = subprocess.DEVNULL if quiet else None
    # Our own module with fixed arguments.
    proc = subprocess.Popen([*cmd, "--demo", *options], stdout=output)  # noqa: S603
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(
                f"the emulator stopped at start (exit {proc.returncode}); is port {port} free?"
            )
        if demo_file.exists():
            demo: dict[str, Any] = json.loads(demo_file.read_text())
            ctx = ssl.create_default_context(cafile=demo["ca_path"])
            with contextlib.suppress(httpx.HTTPError):
                if (
                    httpx.get(
                        f"{demo['base_url']}/_emulator/health", verify=ctx, timeout=2
                    ).status_code
                    == 200
                ):
                    return proc, demo
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit(f"the emulator did not start within {timeout:.0f} s")


async def consent_fields(authorization_url: str, ca_path: str) -> dict[str, str]:
    """What the admin's browser posts back after the demo tenant's automatic consent."""
    ctx = ssl.create_default_context(cafile=ca_path)
    async with httpx.AsyncClient(verify=ctx, trust_env=False, timeout=30) as browser:
        page = await browser.get(authorization_url)
    return {html.unescape(k): html.unescape(v) for k, v in _HIDDEN.findall(page.text)}


async def connect_and_sync(base: str, demo: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {DEMO_PBX_KEY}"}
    async with httpx.AsyncClient(base_url=base, timeout=60, trust_env=False) as api:
        for _ in range(100):
            with contextlib.suppress(httpx.HTTPError):
                if (await api.get("/readyz")).status_code == 200:
                    break
            await asyncio.sleep(0.1)
        status = (await api.get("/api/v1/integration", headers=headers)).json()["status"]
        if status == "connected":
            # The emulator keeps no state across restarts: an old token cache is worthless.
            probe = await api.get(
                "/api/v1/integration/directory/groups", params={"limit": 1}, headers=headers
            )
            if probe.status_code == 200:
                console.print("  the demo PBX is already connected")
                return
        if status != "not_configured":
            await api.post("/api/v1/integration/disconnect", json={}, headers=headers)
        put = await api.put(
            "/api/v1/integration",
            json={
                "client_id": demo["client_id"],
                "tenant_id": demo["tenant_id"],
                "client_secret": demo["client_secret"],
            },
            headers=headers,
        )
        put.raise_for_status()
        fields = await consent_fields(put.json()["authorization_url"], demo["ca_path"])
        done = await api.post("/integration/callback", data=fields)
        if done.status_code != 200:
            raise RuntimeError(f"consent failed: {done.status_code} {done.text[:200]}")
        rules = await api.put(
            "/api/v1/integration/user-sync", json={"enabled": True}, headers=headers
        )
        rules.raise_for_status()
        run_id = rules.json().get("initial_run_id")
        for _ in range(600):
            run = (await api.get(f"/api/v1/sync-runs/{run_id}", headers=headers)).json()
            if run["status"] not in ("queued", "running"):
                console.print(f"  initial user sync: {run['status']}, {run['users']}")
                break
            await asyncio.sleep(0.2)


def run_demo(port: int = 8000, emulator_port: int = 8443) -> None:
    import uvicorn

    from app import migrate
    from app.config import load_settings
    from app.main import create_app

    public = f"http://127.0.0.1:{port}"
    state_dir = Path("var/emulator").resolve()
    proc, demo = start_emulator(
        state_dir,
        emulator_port,
        *("--redirect-uri", f"{public}/integration/callback"),
        *("--redirect-uri", f"{public}/sso/callback"),
    )
    os.environ.update(
        {
            "DEMO": "1",
            "PUBLIC_BASE_URL": public,
            "LOGIN_BASE_URL": demo["base_url"],
            "GRAPH_BASE_URL": f"{demo['base_url']}/v1.0",
            "CA_BUNDLE": demo["ca_path"],
        }
    )
    os.environ.setdefault("PBX_API_KEY", DEMO_PBX_KEY)
    os.environ.setdefault("ADMIN_API_KEY", DEMO_ADMIN_KEY)
    try:
        settings = load_settings()
        migrate.upgrade(settings.database_url)
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None)
        )

        async def main() -> None:
            serving = asyncio.create_task(server.serve())
            try:
                await connect_and_sync(public, demo)
            except Exception as exc:  # the demo still serves; say what went wrong
                console.print(f"[bold red]demo setup failed:[/] {exc}")
            console.print("\n[bold green]pbx-entra demo is running[/]")
            console.print(f"  Swagger UI:    {public}/docs")
            console.print(f"  PBX API key:   {DEMO_PBX_KEY}   (Authorize → PbxApiKey)")
            console.print(f"  operator key:  {DEMO_ADMIN_KEY}")
            console.print(f"  demo tenant:   {demo['tenant_id']} (emulator at {demo['base_url']})")
            console.print("  Ctrl+C stops it.\n")
            await serving

        asyncio.run(main())
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
