"""The run loop: several runs at once, never two for one PBX, the longest-waiting PBX first.

The engine is replaced by a gate the test opens run by run (the claims, leases and statuses are
the real ones, in the real database)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.db import session_scope, utcnow
from app.runs import repository as runs_repo
from app.runs.queue import request_run
from app.sync import worker as worker_module
from app.sync.worker import Worker
from tests.conftest import Api


class GatedExecutor:
    """Stands in for RunExecutor: waits for its gate, then finishes the run `succeeded`."""

    gates: dict[str, asyncio.Event] = {}
    active: set[str] = set()
    peak_per_pbx: dict[str, int] = {}
    started: list[str] = []

    def __init__(self, runtime: Any, run: Any) -> None:
        self.runtime = runtime
        self.run = run

    async def execute(self) -> str:
        cls = GatedExecutor
        pbx = self.run.pbx_id
        cls.started.append(self.run.id)
        cls.active.add(self.run.id)
        running_for_pbx = sum(1 for r in cls.active if cls.pbx_of[r] == pbx)
        cls.peak_per_pbx[pbx] = max(cls.peak_per_pbx.get(pbx, 0), running_for_pbx)
        gate = cls.gates.setdefault(self.run.id, asyncio.Event())
        await gate.wait()
        async with session_scope(self.runtime.sessionmaker) as session:
            row = await runs_repo.get(session, self.run.id, for_update=True)
            assert row is not None
            row.status = "succeeded"
            row.finished_at = utcnow()
            row.locked_by = None
            row.locked_until = None
        cls.active.discard(self.run.id)
        return "succeeded"

    pbx_of: dict[str, str] = {}


async def _settle(worker: Worker) -> None:
    for _ in range(50):
        await asyncio.sleep(0)
        if all(not t.done() for t in worker.running.values()):
            return


async def test_runs_execute_concurrently_fairly_and_one_per_pbx(
    sync_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = sync_api.app.state.runtime
    pbxes = [(await sync_api.new_pbx(f"fair-{i}"))[0]["id"] for i in range(5)]
    order: list[str] = []
    # Queued in this order: p0, a dry run of p0 (dry runs never fold), p1, p2, p3, p4.
    for i, pbx_id in enumerate(pbxes):
        async with session_scope(runtime.sessionmaker) as session:
            run, created = await request_run(session, pbx_id, "manual", ["users"])
            assert created
            order.append(run.id)
        if i == 0:
            async with session_scope(runtime.sessionmaker) as session:
                dry, _ = await request_run(session, pbx_id, "manual", ["users"], dry_run=True)
    GatedExecutor.pbx_of = {rid: pbxes[i] for i, rid in enumerate(order)} | {dry.id: pbxes[0]}
    GatedExecutor.gates, GatedExecutor.active, GatedExecutor.started = {}, set(), []
    GatedExecutor.peak_per_pbx = {}
    monkeypatch.setattr(worker_module, "RunExecutor", GatedExecutor)

    worker = Worker(runtime, concurrency=3, name="fair")
    assert await worker.fill() == 3
    await _settle(worker)
    # The three that waited longest, all running at once (p0's dry run waits for p0's run).
    assert GatedExecutor.started == order[:3]
    assert GatedExecutor.active == set(order[:3])
    async with session_scope(runtime.sessionmaker) as session:
        for rid in order[:3]:
            row = await runs_repo.get(session, rid)
            assert row is not None and row.status == "running"
    assert await worker.fill() == 0  # every slot taken

    # p0's run ends: its dry run waited longer than p3's and p4's runs, and p0 is free now.
    GatedExecutor.gates[order[0]].set()
    await worker.running[order[0]]
    assert await worker.fill() == 1
    await _settle(worker)
    assert GatedExecutor.started[-1] == dry.id

    # p1 ends: p3 next (p4 after it), never a second run of a PBX that has one running.
    GatedExecutor.gates[order[1]].set()
    await worker.running[order[1]]
    assert await worker.fill() == 1
    await _settle(worker)
    assert GatedExecutor.started[-1] == order[3]
    for gate_id in (order[2], dry.id, order[3]):
        GatedExecutor.gates.setdefault(gate_id, asyncio.Event()).set()
    GatedExecutor.gates.setdefault(order[4], asyncio.Event()).set()
    for _ in range(5):
        await asyncio.gather(*worker.running.values())
        await worker.fill()
    await asyncio.gather(*worker.running.values())
    assert sorted(GatedExecutor.started) == sorted([*order, dry.id])
    assert max(GatedExecutor.peak_per_pbx.values()) == 1
    assert worker.running == {}
