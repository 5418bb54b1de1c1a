"""Running the `pbx-entra` command in this process, as the shell would, against the test's
database and emulator (a thread: the command runs its own event loop)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from typer.testing import CliRunner

from app.cli import cli
from tests.cloud import Cloud
from tests.conftest import SECRET_KEY


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


async def run_cli(database_url: str, cloud: Cloud, *args: str, columns: int = 200) -> Ran:
    env = {
        "DATABASE_URL": database_url,
        "SECRET_KEY": SECRET_KEY,
        "LOGIN_BASE_URL": cloud.base_url,
        "GRAPH_BASE_URL": f"{cloud.base_url}/v1.0",
        "CA_BUNDLE": str(cloud.emulator.ca_path),
        "COLUMNS": str(columns),
    }
    result = await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Ran(result.exit_code, result.stdout, result.stderr)
