"""The planners' verdicts, step by step, for the objects they are asked about (explain)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

NO_TRACE: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Verdict:
    step: str
    ok: bool
    detail: str
    code: str | None = None


class Trace:
    """Verdicts per Entra id, in the order the planner reaches them; only for `entra_ids`."""

    def __init__(self, entra_ids: Iterable[str]) -> None:
        self.ids = frozenset(entra_ids)
        self.steps: dict[str, list[Verdict]] = {i: [] for i in self.ids}

    def add(self, entra_id: str, step: str, ok: bool, detail: str, code: str | None = None) -> None:
        self.steps[entra_id].append(Verdict(step, ok, detail, code))
