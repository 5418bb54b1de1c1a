"""Narrow edge cases of the Graph client that the emulator does not produce on demand (respx)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
import respx

from app.clock import FakeClock
from app.graph.client import GraphClient, RetryPolicy, retry_after_seconds
from app.graph.errors import GraphError

BASE = "https://graph.test/v1.0"


def client(clock: FakeClock, **retry: float) -> tuple[GraphClient, list[bool]]:
    forced: list[bool] = []

    async def token(force: bool) -> str:
        forced.append(force)
        return "tok-2" if force else "tok-1"

    policy = RetryPolicy(**retry) if retry else RetryPolicy(base_backoff=0.01)
    return GraphClient(BASE, token, http=httpx.AsyncClient(), retry=policy, clock=clock), forced


def test_retry_after_forms() -> None:
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "7"})) == 7.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert (
        25 <= (retry_after_seconds(httpx.Response(429, headers={"Retry-After": later})) or 0) <= 31
    )
    # An HTTP date counts from the clock's now (the runtime's clock in the client).
    at = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    dated = httpx.Response(429, headers={"Retry-After": format_datetime(at, usegmt=True)})
    assert retry_after_seconds(dated, now=at - timedelta(seconds=42)) == 42.0
    assert retry_after_seconds(dated, now=at + timedelta(seconds=5)) == 0.0
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "soon"})) is None
    assert retry_after_seconds(httpx.Response(429)) is None


@respx.mock
async def test_401_refreshes_the_token_once() -> None:
    clock = FakeClock()
    graph, forced = client(clock)
    route = respx.get(f"{BASE}/organization").mock(
        side_effect=[
            httpx.Response(
                401, json={"error": {"code": "InvalidAuthenticationToken", "message": "x"}}
            ),
            httpx.Response(200, json={"value": [{"id": "o"}]}),
        ]
    )
    assert (await graph.get("organization"))["value"] == [{"id": "o"}]
    assert forced == [False, True, False] and route.call_count == 2
    assert route.calls[1].request.headers["Authorization"] == "Bearer tok-1"


@respx.mock
async def test_transport_errors_back_off_then_give_up() -> None:
    clock = FakeClock()
    graph, _ = client(clock, max_attempts=3, base_backoff=0.5)
    respx.get(f"{BASE}/users").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(GraphError) as err:
        await graph.get("users")
    assert err.value.code == "unreachable" and graph.stats.requests == 3
    assert len(clock.slept) == 2 and clock.slept[1] > clock.slept[0] / 2


@respx.mock
async def test_retry_after_is_bounded_and_the_total_wait_too() -> None:
    clock = FakeClock()
    graph, _ = client(clock, max_attempts=10, max_retry_after=5, max_total_wait=12)
    respx.get(f"{BASE}/users").mock(
        return_value=httpx.Response(
            429,
            headers={"Retry-After": "100"},
            json={"error": {"code": "TooManyRequests", "message": "m"}},
        )
    )
    with pytest.raises(GraphError) as err:
        await graph.get("users")
    assert err.value.status == 429 and clock.slept == [5, 5]
    assert graph.stats.throttled == 3


@respx.mock
async def test_server_errors_without_retry_after_back_off_exponentially() -> None:
    clock = FakeClock()
    graph, _ = client(clock, max_attempts=4, base_backoff=1)
    respx.get(f"{BASE}/groups").mock(
        side_effect=[httpx.Response(500), httpx.Response(502), httpx.Response(200, json={})]
    )
    assert await graph.get("groups") == {}
    assert len(clock.slept) == 2 and 0.5 <= clock.slept[0] <= 1.5 and 1 <= clock.slept[1] <= 3


@respx.mock
async def test_errors_without_a_graph_body_and_empty_answers() -> None:
    clock = FakeClock()
    graph, _ = client(clock)
    respx.get(f"{BASE}/bad").mock(return_value=httpx.Response(400, text="<html>nope</html>"))
    with pytest.raises(GraphError) as err:
        await graph.get("bad")
    assert err.value.code == "http_error" and "nope" in err.value.message
    respx.delete(f"{BASE}/subscriptions/1").mock(return_value=httpx.Response(204))
    assert await graph.request("DELETE", "subscriptions/1") == {}


@respx.mock
async def test_batch_retries_throttled_items_alone() -> None:
    clock = FakeClock()
    graph, _ = client(clock)
    calls: list[list[str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        import json

        ids = [r["id"] for r in json.loads(request.content)["requests"]]
        calls.append(ids)
        responses = []
        for i in ids:
            if i == "1" and len(calls) == 1:
                responses.append(
                    {"id": i, "status": 429, "headers": {"Retry-After": "2"}, "body": {}}
                )
            else:
                responses.append({"id": i, "status": 200, "body": {"value": i}})
        return httpx.Response(200, json={"responses": responses})

    respx.post(f"{BASE}/$batch").mock(side_effect=answer)
    requests = [{"id": str(i), "method": "GET", "url": f"/users/{i}"} for i in range(25)]
    results = await graph.batch(requests)
    assert sorted(results, key=int) == [str(i) for i in range(25)]
    assert calls[0] == [str(i) for i in range(20)] and calls[2] == ["1"]
    assert clock.slept == [2.0] and results["1"]["body"] == {"value": "1"}
