"""Fixtures for the emulator's tests: one emulator (HTTPS, loopback) for the whole session, and
clients for its control API and Graph; helpers are in `support.py`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import requests

from emulator import faults
from emulator.testing import RunningEmulator, run_emulator
from tests.emulator.support import SeededTenant, make_tenant


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEmulator]:
    with run_emulator(tmp_path_factory.mktemp("emulator-state")) as running:
        yield running


@pytest.fixture(scope="session")
def ca_path(emulator: RunningEmulator) -> Path:
    return emulator.ca_path


@pytest.fixture(scope="session")
def control(emulator: RunningEmulator) -> Iterator[httpx.Client]:
    """An httpx client for the control API (base URL `.../_emulator`)."""
    with httpx.Client(
        base_url=f"{emulator.base_url}/_emulator", verify=emulator.ssl_context, timeout=30
    ) as client:
        yield client


@pytest.fixture(scope="session")
def graph(emulator: RunningEmulator) -> Iterator[httpx.Client]:
    """An httpx client for Graph (base URL `.../v1.0`), without credentials."""
    with httpx.Client(
        base_url=f"{emulator.base_url}/v1.0", verify=emulator.ssl_context, timeout=30
    ) as client:
        yield client


@pytest.fixture(autouse=True)
def _no_leftover_faults(emulator: RunningEmulator) -> Iterator[None]:
    yield
    faults.clear_faults(emulator.state)


@pytest.fixture
def tenant(emulator: RunningEmulator, control: httpx.Client) -> SeededTenant:
    """A fresh small tenant (50 users, 8 groups, seed 7) with an app registered."""
    return make_tenant(emulator, control, users=50, groups=8, seed=7)


@pytest.fixture
def msal_http_client(ca_path: Path) -> Iterator[requests.Session]:
    """The requests session MSAL is given: trusts the emulator's CA, ignores the environment."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(ca_path)
    yield session
    session.close()
