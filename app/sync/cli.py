"""`pbx-entra sync`: queue a run for one PBX, execute it here, and show its progress."""

from __future__ import annotations

import asyncio
import contextlib

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import create_engine, session_scope, sessionmaker
from app.errors import ProblemError
from app.runs import repository as runs_repo
from app.runtime import Runtime
from app.sync import service
from app.sync.schemas import SyncRequest
from app.sync.worker import Worker
from app.tenants.models import Pbx

console = Console(stderr=True)


async def run_sync(settings: Settings, pbx_name: str, dry_run: bool) -> int:
    engine = create_engine(settings.database_url)
    maker = sessionmaker(engine)
    runtime = Runtime.create(settings, maker)
    try:
        async with session_scope(maker) as session:
            pbx = (
                await session.execute(select(Pbx).where(Pbx.name == pbx_name))
            ).scalar_one_or_none()
            if pbx is None:
                console.print(f"[red]no PBX named {pbx_name!r}[/]")
                return 2
            try:
                run, _ = await service.request_sync(session, pbx, SyncRequest(dry_run=dry_run))
            except ProblemError as exc:
                console.print(f"[red]{exc.code}:[/] {exc.detail}")
                return 2
            run_id = run.id
        worker = Worker(runtime, name="cli")
        task = asyncio.create_task(_work_until(worker, run_id, maker))
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed} objects"),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            bar = progress.add_task("queued", total=None)
            while not task.done():
                async with session_scope(maker) as session:
                    row = await runs_repo.get(session, run_id)
                if row is not None:
                    p = row.progress or {}
                    progress.update(
                        bar,
                        description=f"{row.status}: {p.get('phase', '')}",
                        completed=p.get("done", 0),
                        total=p.get("total"),
                    )
                await asyncio.sleep(0.3)
            await task
        async with session_scope(maker) as session:
            final = await runs_repo.get(session, run_id)
        assert final is not None
        out = service.run_out(final)
        table = Table(
            title=f"run {out.id} ({out.trigger}{', dry run' if out.dry_run else ''}): {out.status}"
        )
        for col in ("scope", "created", "updated", "deleted", "associated", "unchanged", "failed"):
            table.add_column(col)
        for scope in ("users", "groups", "contacts"):
            counts = getattr(out, scope)
            if counts:
                table.add_row(
                    scope,
                    *(
                        str(counts.get(k, ""))
                        for k in (
                            "created",
                            "updated",
                            "deleted",
                            "associated",
                            "unchanged",
                            "failed",
                        )
                    ),
                )
        console.print(table)
        for failure in out.failures[:20]:
            console.print(
                f"  {failure['code']}: {failure.get('display_name') or failure['source_id']} — {failure['message']}"
            )
        if out.error:
            console.print(f"[red]{out.error['code']}:[/] {out.error['message']}")
        return 0 if out.status in ("succeeded", "partial", "held") else 1
    finally:
        await runtime.close()
        await engine.dispose()


async def _work_until(worker: Worker, run_id: str, maker: async_sessionmaker[AsyncSession]) -> None:
    """Execute runs until ours is done (an earlier queued run of another PBX may go first)."""
    while True:
        done = await worker.run_once()
        if done == run_id:
            return
        if done is None:
            # Another process's worker holds it: wait for it to finish.
            with contextlib.suppress(Exception):
                async with session_scope(maker) as session:
                    row = await runs_repo.get(session, run_id)
                if row is not None and row.status not in ("queued", "running"):
                    return
            await asyncio.sleep(0.5)


async def run_explain(settings: Settings, pbx_name: str, user: str, as_json: bool) -> int:
    """`pbx-entra explain USER`: the steps of one user's plan as a table (writes nothing)."""
    from app.integration.tokens import graph_for
    from app.sync.explain import explain_user

    out = Console()
    engine = create_engine(settings.database_url)
    maker = sessionmaker(engine)
    runtime = Runtime.create(settings, maker)
    try:
        async with session_scope(maker) as session:
            pbx = (
                await session.execute(select(Pbx).where(Pbx.name == pbx_name))
            ).scalar_one_or_none()
            if pbx is None:
                console.print(f"[red]no PBX named {pbx_name!r}[/]")
                return 2
            try:
                answer = await explain_user(
                    session, graph_for(runtime, pbx.id), pbx.id, pbx.max_extensions, user
                )
            except ProblemError as exc:
                console.print(f"[red]{exc.code}:[/] {exc.detail}")
                return 1
        if as_json:
            out.print_json(answer.model_dump_json())
            return 0
        u = answer.user
        title = f"{u.display_name or u.id} ({u.user_principal_name or 'not in Entra'})"
        table = Table(title=title)
        for col in ("step", "ok", "detail"):
            table.add_column(col)
        for step in answer.steps:
            mark = "[green]yes[/]" if step.ok else f"[red]no[/] {step.code or ''}".rstrip()
            table.add_row(step.step, mark, step.detail)
        out.print(table)
        o = answer.outcome
        line = f"outcome: [bold]{o.action}[/]"
        if o.code:
            line += f" ({o.code})"
        if o.number:
            line += f", number {o.number}"
        if o.planned:
            line += f", {o.planned} once unblocked"
        out.print(line)
        for name, (old, new) in ((k, v) for k, v in o.fields.items() if o.action == "update"):
            out.print(f"  {name}: {old!r} → {new!r}")
        if answer.outstanding_failure:
            f = answer.outstanding_failure
            out.print(f"outstanding failure: {f.code} since {f.first_failed_at:%Y-%m-%d %H:%M} UTC")
        if answer.as_of_now:
            out.print(f"as of now: {', '.join(answer.as_of_now)} (other new users may come first)")
        return 0
    finally:
        await runtime.close()
        await engine.dispose()
