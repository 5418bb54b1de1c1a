"""Schemathesis against a real server on both databases: every operation of the OpenAPI document,
positive and negative examples, NUL characters allowed, a fixed seed and a bounded number of
examples. No answer may be a 5xx, and every answer must be documented: its status code, its
content type and its body's schema."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.main import create_app
from app.route_kinds import route_kind
from tests.conftest import ADMIN_KEY, ServedApp, clean_database, free_port, make_settings
from tests.untraced import untraced

EXAMPLES = 3  # per operation and generation mode (and the explicit examples): about 8 s a database
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


async def _clean(database_url: str) -> None:
    await clean_database(database_url)


@pytest.fixture
def served(database_url: str, cloud: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    asyncio.run(_clean(database_url))
    app = create_app(make_settings(database_url, worker_enabled=False, **cloud.settings()))
    with ServedApp(app, free_port()) as server:
        yield server.base_url, app.openapi()


def _headers(path: str, pbx_key: str) -> dict[str, str]:
    kind = route_kind(path)
    if kind == "operator":
        return {"Authorization": f"Bearer {ADMIN_KEY}"}
    if kind == "pbx":
        return {"Authorization": f"Bearer {pbx_key}"}
    return {}


def _runner(
    operation: Any,
    mode: schemathesis.GenerationMode,
    base_url: str,
    session: requests.Session,
    headers: dict[str, str],
) -> Any:
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=base_url, session=session, headers=headers, checks=CHECKS)

    return run


def test_every_operation_answers_as_documented(served: tuple[str, dict[str, Any]]) -> None:
    base_url, document = served
    created = httpx.post(
        f"{base_url}/api/v1/pbxes",
        json={"name": "fuzzed"},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert created.status_code == 201, created.text
    pbx_key = created.json()["api_key"]
    schema = schemathesis.openapi.from_dict(document)
    schema.config.generation.update(
        allow_x00=True,
        with_security_parameters=False,
        modes=["positive", "negative"],
    )
    findings: list[str] = []
    session = requests.Session()
    # Coverage measures the served app, in its own thread; in this one it would only trace the
    # generator's own work (several times slower).
    with untraced():
        _run_all(schema, base_url, session, pbx_key, findings)
    operations = len(list(schema.get_all_operations()))
    assert operations == len([m for ops in document["paths"].values() for m in ops])
    assert operations > 60
    assert findings == [], "\n\n".join(findings)


def _run_all(
    schema: Any, base_url: str, session: requests.Session, pbx_key: str, findings: list[str]
) -> None:
    for result in schema.get_all_operations():
        operation = result.ok()
        headers = _headers(operation.path, pbx_key)
        modes = [schemathesis.GenerationMode.POSITIVE]
        if operation.body or operation.query:
            modes.append(schemathesis.GenerationMode.NEGATIVE)  # path ids alone can't be wrong
        for mode in modes:
            run = _runner(operation, mode, base_url, session, headers)
            try:
                run()
            except Unsatisfiable:
                continue  # no invalid input exists for this operation
            except (Exception, BaseExceptionGroup) as exc:
                findings.append(f"{operation.label} [{mode.value}]: {str(exc)[:600]}")
