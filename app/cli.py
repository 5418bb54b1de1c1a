"""The `pbx-entra` command: serve, migrate, openapi."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated

import typer
from rich.console import Console

from app.config import ConfigError, Settings, load_settings

cli = typer.Typer(
    help="pbx-entra: a cloud PBX's Microsoft Entra ID integration.", no_args_is_help=True
)
err = Console(stderr=True, soft_wrap=True)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        err.print(f"[bold red]configuration error:[/] {exc}")
        raise typer.Exit(2) from None


async def _check_database(url: str) -> None:
    from sqlalchemy import text

    from app.db import create_engine

    engine = create_engine(url)
    try:
        async with asyncio.timeout(10):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


def check_database(settings: Settings) -> None:
    """Fail with one clear line when the database can't be reached."""
    try:
        asyncio.run(_check_database(settings.database_url))
    except Exception as exc:
        from sqlalchemy.engine import make_url

        where = make_url(settings.database_url).render_as_string(hide_password=True)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        err.print(f"[bold red]database unreachable:[/] {where}: {reason}")
        raise typer.Exit(2) from None


@cli.command()
def migrate() -> None:
    """Bring the database schema to the latest migration."""
    from app import migrate as migrations

    settings = _settings()
    check_database(settings)
    migrations.upgrade(settings.database_url)
    err.print(f"database at migration {migrations.head_revision()}")


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8000,
    migrate_first: Annotated[bool, typer.Option("--migrate/--no-migrate")] = True,
    ssl_certfile: Annotated[str | None, typer.Option()] = None,
    ssl_keyfile: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Check the settings and the database, migrate, and serve the API."""
    import uvicorn

    from app import migrate as migrations
    from app.main import create_app

    settings = _settings()
    check_database(settings)
    if migrate_first:
        migrations.upgrade(settings.database_url)
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_config=None,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )


@cli.command()
def openapi() -> None:
    """Print the OpenAPI document generated from the app."""
    from app.main import create_app

    doc = create_app(Settings(demo=True)).openapi()
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def main() -> None:
    cli()


@cli.command()
def demo(
    port: Annotated[int, typer.Option(help="Port of the service")] = 8000,
    emulator_port: Annotated[int, typer.Option(help="Port of the emulator")] = 8443,
) -> None:
    """The demo: SQLite, the emulator as a connected and synced demo tenant."""
    from app.demo import run_demo

    run_demo(port, emulator_port)


@cli.command()
def sync(
    pbx: Annotated[str, typer.Option(help="The PBX's name")] = "default",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan only; change nothing")] = False,
) -> None:
    """Run a sync of every active section now, with a progress bar and the summary."""
    from app.sync.cli import run_sync

    settings = _settings()
    check_database(settings)
    raise typer.Exit(asyncio.run(run_sync(settings, pbx, dry_run)))


@cli.command()
def explain(
    user: Annotated[str, typer.Argument(help="The user's Entra id, userPrincipalName or mail")],
    pbx: Annotated[str, typer.Option(help="The PBX's name")] = "default",
    as_json: Annotated[bool, typer.Option("--json", help="The answer as JSON")] = False,
) -> None:
    """Why is this user (not) synced: each rule's verdict and what a sync would do now."""
    from app.sync.cli import run_explain

    settings = _settings()
    check_database(settings)
    raise typer.Exit(asyncio.run(run_explain(settings, pbx, user, as_json)))
