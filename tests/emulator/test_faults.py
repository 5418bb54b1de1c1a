"""Injected faults as a client sees them: statuses, headers, timing and dropped connections."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from emulator import faults
from emulator.testing import RunningEmulator
from tests.emulator.support import SeededTenant


def add_fault(control: httpx.Client, **spec: Any) -> dict[str, Any]:
    response = control.post("/faults", json=spec)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def discovery(tenant: SeededTenant) -> str:
    return f"/{tenant.tenant_id}/v2.0/.well-known/openid-configuration"


def statuses(client: httpx.Client, path: str, count: int) -> list[int]:
    return [client.get(path).status_code for _ in range(count)]


def test_throttle_answers_429_with_retry_after_and_graph_error_body(
    emulator: RunningEmulator, control: httpx.Client
) -> None:
    add_fault(control, action="throttle", path=r"^/v1\.0/users", retry_after=7)
    with emulator.client() as client:
        response = client.get(
            "/v1.0/users", params={"$top": "999"}, headers={"client-request-id": "abc-123"}
        )
        other = client.get("/v1.0/groups")

    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    error = response.json()["error"]
    assert error["code"] == "TooManyRequests"
    assert error["message"] == "Please retry again later."
    assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}
    assert other.status_code != 429  # the fault is for /users only


def test_every_nth_request_is_throttled(
    emulator: RunningEmulator, control: httpx.Client, tenant: SeededTenant
) -> None:
    add_fault(control, action="throttle", path="openid-configuration", every=3)
    with emulator.client() as client:
        assert statuses(client, discovery(tenant), 6) == [200, 200, 429, 200, 200, 429]


def test_rate_budget_throttles_within_the_window_and_says_when_it_refills(
    emulator: RunningEmulator, control: httpx.Client, tenant: SeededTenant
) -> None:
    add_fault(control, action="throttle", path="openid-configuration", rate=4, window=10)
    with emulator.client() as client:
        results = [client.get(discovery(tenant)) for _ in range(6)]

    assert [r.status_code for r in results] == [200, 200, 200, 200, 429, 429]
    assert 1 <= int(results[4].headers["retry-after"]) <= 10


def test_rate_budget_counts_graph_resource_units(
    emulator: RunningEmulator, control: httpx.Client
) -> None:
    # GET /users costs 2 units, 1 with $select: a budget of 5 allows 2 plain requests.
    add_fault(control, action="throttle", path=r"^/v1\.0/users$", rate=5, window=10)
    with emulator.client() as client:
        plain = statuses(client, "/v1.0/users", 3)

    assert plain[:2] != [429, 429] and plain[2] == 429
    assert faults.resource_units("GET", "/v1.0/users", "$top=999") == 2
    assert faults.resource_units("GET", "/v1.0/users", "$select=id&$top=999") == 1
    assert faults.resource_units("GET", "/v1.0/groups/g1/transitiveMembers", "") == 5
    assert faults.resource_units("GET", "/v1.0/users/delta", "") == 2
    assert faults.resource_units("GET", "/v1.0/users/delta", "$deltatoken=abc") == 1


def test_service_unavailable_and_gateway_timeout(
    emulator: RunningEmulator, control: httpx.Client
) -> None:
    add_fault(control, action="error", status=503, retry_after=3, count=1)
    with emulator.client() as client:
        unavailable = client.get("/v1.0/users")
        add_fault(control, action="error", status=504, count=1)
        timeout = client.get("/v1.0/users")
        recovered = client.get("/v1.0/users")

    assert unavailable.status_code == 503
    assert unavailable.headers["retry-after"] == "3"
    assert unavailable.json()["error"]["code"] == "ServiceUnavailable"
    assert timeout.status_code == 504 and "retry-after" not in timeout.headers
    assert timeout.json()["error"]["code"] == "GatewayTimeout"
    assert recovered.status_code not in (503, 504)


def test_identity_platform_faults_answer_in_the_aadsts_shape(
    emulator: RunningEmulator, control: httpx.Client, tenant: SeededTenant
) -> None:
    add_fault(control, action="throttle", path="/oauth2/v2.0/token", retry_after=4, count=1)
    add_fault(control, action="error", status=503, path="openid-configuration", count=1)
    with emulator.client() as client:
        throttled = client.post(f"/{tenant.tenant_id}/oauth2/v2.0/token", data={})
        unavailable = client.get(discovery(tenant))

    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "4"
    assert throttled.json()["error"] == "temporarily_unavailable"
    assert throttled.json()["error_codes"] == [90055]
    assert unavailable.status_code == 503
    assert unavailable.json()["error_description"].startswith("AADSTS90006: ")


def test_latency_is_added(
    emulator: RunningEmulator, control: httpx.Client, tenant: SeededTenant
) -> None:
    add_fault(control, action="latency", latency_ms=300, path="openid-configuration")
    with emulator.client() as client:
        client.get("/_emulator/health")  # connection set up before timing
        started = time.perf_counter()
        response = client.get(discovery(tenant))
        elapsed = time.perf_counter() - started

    assert response.status_code == 200
    assert elapsed >= 0.3


@pytest.mark.parametrize(
    ("mode", "error"),
    [("close", httpx.RemoteProtocolError), ("reset", (httpx.ReadError, httpx.RemoteProtocolError))],
)
def test_dropped_connection_is_seen_by_httpx(
    emulator: RunningEmulator,
    control: httpx.Client,
    tenant: SeededTenant,
    mode: str,
    error: Any,
) -> None:
    add_fault(control, action="drop", drop_mode=mode, path="openid-configuration", count=1)
    with emulator.client() as client:
        with pytest.raises(error):
            client.get(discovery(tenant))
        assert client.get(discovery(tenant)).status_code == 200  # the fault removed itself

    entries = control.get("/requests", params={"path_contains": "openid-configuration"}).json()
    assert entries["value"][-2]["status"] == 0  # logged as answered with nothing


def test_fail_after_n_successful_requests(
    emulator: RunningEmulator, control: httpx.Client, tenant: SeededTenant
) -> None:
    add_fault(control, action="error", status=503, after=2, count=2)
    with emulator.client() as client:
        assert statuses(client, discovery(tenant), 5) == [200, 200, 503, 503, 200]


def test_count_removes_the_fault_and_filters_by_method_and_tenant(
    emulator: RunningEmulator, control: httpx.Client, tenant: SeededTenant
) -> None:
    fault = add_fault(
        control, action="throttle", count=1, method="POST", tenant_id=tenant.tenant_id
    )
    with emulator.client() as client:
        assert client.get(discovery(tenant)).status_code == 200  # GET: not matched
        token = client.post(f"/{tenant.tenant_id}/oauth2/v2.0/token", data={})
    assert token.status_code == 429
    assert fault["id"] not in [f["id"] for f in control.get("/faults").json()["value"]]


def test_check_throttles_batch_sub_requests_individually(
    emulator: RunningEmulator, control: httpx.Client
) -> None:
    add_fault(control, action="throttle", path=r"^/v1\.0/users/", every=2, retry_after=5)
    state = emulator.state

    first = faults.check(state, None, "GET", "/v1.0/users/1")
    second = faults.check(state, None, "GET", "/v1.0/users/2")

    assert first is None
    assert second is not None and second.status_code == 429
    assert second.headers["retry-after"] == "5"


def test_invalid_fault_definitions_are_400(control: httpx.Client) -> None:
    for spec in (
        {"action": "explode"},
        {"action": "throttle", "every": 2, "rate": 3},
        {"action": "latency"},
        {"action": "throttle", "path": "("},
        {"action": "error", "status": 200},
    ):
        response = control.post("/faults", json=spec)
        assert response.status_code == 400, spec
        assert "error" in response.json()


def test_faults_are_listed_and_cleared(control: httpx.Client) -> None:
    add_fault(control, action="latency", latency_ms=5, path="nowhere")
    add_fault(control, action="throttle", path="nowhere")
    assert len(control.get("/faults").json()["value"]) == 2
    assert control.delete("/faults").status_code == 204
    assert control.get("/faults").json()["value"] == []


def test_request_log_records_and_filters(
    emulator: RunningEmulator, control: httpx.Client, tenant: SeededTenant
) -> None:
    start = control.get("/requests").json()["last_seq"]
    with emulator.client() as client:
        client.get(discovery(tenant), params={"x": "1"})
        client.get(f"/{tenant.tenant_id}/discovery/v2.0/keys")
        client.get("/v1.0/users", params={"$top": "5"})

    since = control.get("/requests", params={"since": start}).json()["value"]
    keys = control.get(
        "/requests", params={"since": start, "path_contains": "/discovery/v2.0/keys"}
    ).json()["value"]
    graph = control.get("/requests", params={"since": start, "path_contains": "/v1.0/"}).json()

    assert [e["method"] for e in since] == ["GET", "GET", "GET"]
    assert since[0]["query"] == "x=1" and since[0]["status"] == 200
    assert since[0]["tenant_id"] == tenant.tenant_id
    assert [e["path"] for e in keys] == [f"/{tenant.tenant_id}/discovery/v2.0/keys"]
    assert graph["value"][0]["query"] == "%24top=5"
    assert all(e["seq"] > start for e in since)
    assert not any(e["path"].startswith("/_emulator") for e in since)

    assert control.delete("/requests").status_code == 204
    assert control.get("/requests").json()["value"] == []
