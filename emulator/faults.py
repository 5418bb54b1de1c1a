"""Injected faults: throttling, server errors, latency and dropped connections, per route or global.

Throttling imitates Microsoft Graph: a 429 with a `Retry-After` header (in seconds) and a
`TooManyRequests` error body, https://learn.microsoft.com/en-us/graph/throttling ("When a throttling
threshold is exceeded, Microsoft Graph limits any further requests from that client for a period of
time. When throttling occurs, Microsoft Graph returns HTTP status code 429 (Too many requests), and
the requests fail. A suggested wait time is returned in the response header of the failed request").
The identity and access limits are budgets of resource units per application+tenant pair over 10
seconds, each request costing units by path (same page, "Identity and access service limits":
GET users 2, GET groups/{id}/members 3, GET groups/{id}/transitiveMembers 5, any other 1; `$select`
-1, `$expand` +1, `$top` under 20 -1; never below 1; a delta request with a token costs 1, without
2). The `rate` trigger models that budget (or counts requests with `cost: "request"`).

A fault has an action (`throttle`, `error`, `latency`, `drop`) and a trigger: every matching
request (default), every Nth one (`every`), more than `rate` requests per `window` seconds (`rate`),
or every one after the first N successful ones (`after`: a failure midway through paging). `count`
limits how many times it fires; it then removes itself.
"""

from __future__ import annotations

import math
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.responses import Response

from emulator.errors import aadsts_error, graph_error
from emulator.state import EmulatorState

Action = Literal["throttle", "error", "latency", "drop"]
ACTIONS: tuple[str, ...] = ("throttle", "error", "latency", "drop")

# Graph's error codes for the statuses a fault can answer with
# (https://learn.microsoft.com/en-us/graph/errors, "HTTP status codes").
ERROR_CODES = {
    429: ("TooManyRequests", "Please retry again later."),
    500: ("InternalServerError", "An internal server error occurred."),
    502: ("BadGateway", "Bad gateway."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable."),
    504: ("GatewayTimeout", "The server did not receive a timely response."),
}


class FaultError(ValueError):
    """A fault definition that does not make sense."""


@dataclass
class Fault:
    id: str
    action: Action
    path: str | None = None  # regular expression searched in the request path
    method: str | None = None
    tenant_id: str | None = None
    status: int = 429
    retry_after: int | None = None  # seconds
    latency_ms: int = 0
    drop_mode: Literal["close", "reset"] = "close"
    every: int | None = None
    rate: int | None = None
    window: float = 10.0
    cost: Literal["resource_units", "request"] = "resource_units"
    after: int | None = None
    count: int | None = None  # fires this many times, then the fault removes itself
    matched: int = 0
    fired: int = 0
    created_at: float = field(default_factory=time.time)
    _pattern: re.Pattern[str] | None = None
    _windows: dict[str | None, tuple[float, int]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "action": self.action,
            "path": self.path,
            "method": self.method,
            "tenant_id": self.tenant_id,
            "status": self.status,
            "retry_after": self.retry_after,
            "latency_ms": self.latency_ms,
            "drop_mode": self.drop_mode,
            "every": self.every,
            "rate": self.rate,
            "window": self.window,
            "cost": self.cost,
            "after": self.after,
            "count": self.count,
            "matched": self.matched,
            "fired": self.fired,
        }

    def matches(self, tenant_id: str | None, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        if self.tenant_id and self.tenant_id != tenant_id:
            return False
        return self._pattern is None or self._pattern.search(path) is not None

    def triggers(
        self, tenant_id: str | None, now: float, units: int = 1
    ) -> tuple[bool, int | None]:
        """Count one matching request; return whether the fault fires and its Retry-After."""
        self.matched += 1
        retry_after = self.retry_after
        if self.every is not None:
            fire = self.matched % self.every == 0
        elif self.after is not None:
            fire = self.matched > self.after
        elif self.rate is not None:
            start, used = self._windows.get(tenant_id, (now, 0))
            if now - start >= self.window:
                start, used = now, 0
            fire = used + units > self.rate
            if not fire:  # a throttled request does not spend the budget
                used += units
            self._windows[tenant_id] = (start, used)
            if fire and retry_after is None:
                retry_after = max(1, math.ceil(start + self.window - now))
        else:
            fire = True
        return fire, retry_after


@dataclass
class Decision:
    """What the middleware does with a request: wait, then answer, drop, or pass it on."""

    latency_ms: int = 0
    response: Response | None = None
    drop: Literal["close", "reset"] | None = None
    fault_ids: list[str] = field(default_factory=list)


_lock = threading.Lock()


def faults(state: EmulatorState) -> list[Fault]:
    installed: list[Fault] = state.extra.setdefault("faults", [])
    return installed


def add_fault(state: EmulatorState, spec: dict[str, Any]) -> Fault:
    """Validate a fault definition (the control API's JSON) and install it."""
    action = spec.get("action", "throttle")
    if action not in ACTIONS:
        raise FaultError(f"action must be one of {', '.join(ACTIONS)}")
    status = int(spec.get("status", 429 if action == "throttle" else 503))
    if action == "throttle":
        status = 429
    if action == "error" and not 400 <= status <= 599:
        raise FaultError("status must be an HTTP error status")
    triggers = [k for k in ("every", "rate", "after") if spec.get(k) is not None]
    if len(triggers) > 1:
        raise FaultError("give at most one of every, rate and after")
    for name in ("every", "rate", "count"):
        if spec.get(name) is not None and int(spec[name]) < 1:
            raise FaultError(f"{name} must be at least 1")
    if spec.get("after") is not None and int(spec["after"]) < 0:
        raise FaultError("after must not be negative")
    if action == "latency" and int(spec.get("latency_ms", 0)) <= 0:
        raise FaultError("latency needs latency_ms > 0")
    cost = spec.get("cost", "resource_units")
    if cost not in ("resource_units", "request"):
        raise FaultError("cost must be resource_units or request")
    drop_mode = spec.get("drop_mode", "close")
    if drop_mode not in ("close", "reset"):
        raise FaultError("drop_mode must be close or reset")
    path = spec.get("path")
    try:
        pattern = re.compile(path) if path else None
    except re.error as exc:
        raise FaultError(f"path is not a valid regular expression: {exc}") from None
    fault = Fault(
        id=str(spec.get("id") or uuid.uuid4()),
        action=action,
        path=path,
        method=spec.get("method"),
        tenant_id=spec.get("tenant_id"),
        status=status,
        retry_after=None if spec.get("retry_after") is None else int(spec["retry_after"]),
        latency_ms=int(spec.get("latency_ms", 0)),
        drop_mode=drop_mode,
        every=None if spec.get("every") is None else int(spec["every"]),
        rate=None if spec.get("rate") is None else int(spec["rate"]),
        window=float(spec.get("window", 10.0)),
        cost=cost,
        after=None if spec.get("after") is None else int(spec["after"]),
        count=None if spec.get("count") is None else int(spec["count"]),
        _pattern=pattern,
    )
    if fault.window <= 0:
        raise FaultError("window must be positive")
    if action == "throttle" and fault.retry_after is None and fault.rate is None:
        fault.retry_after = 1
    with _lock:
        faults(state).append(fault)
    return fault


def remove_fault(state: EmulatorState, fault_id: str) -> bool:
    with _lock:
        items = faults(state)
        for i, fault in enumerate(items):
            if fault.id == fault_id:
                del items[i]
                return True
    return False


def clear_faults(state: EmulatorState) -> None:
    with _lock:
        faults(state).clear()


# The identity platform's answers to the same conditions (reference-error-codes: AADSTS90055
# TenantThrottlingError "There are too many incoming requests", AADSTS90006
# ExternalServerRetryableError "The service is temporarily unavailable", AADSTS50000
# TokenIssuanceError "There's an issue with the sign-in service").
IDENTITY_ERRORS = {
    429: ("temporarily_unavailable", 90055, "There are too many incoming requests."),
    500: ("server_error", 50000, "There's an issue with the sign-in service."),
}
IDENTITY_UNAVAILABLE = ("temporarily_unavailable", 90006, "The service is temporarily unavailable.")


def error_response(status: int, retry_after: int | None, path: str = "/v1.0") -> Response:
    """A Graph error body for Graph paths, an AADSTS body for the identity platform's."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    if not path.startswith("/v1.0"):
        error, code, description = IDENTITY_ERRORS.get(status, IDENTITY_UNAVAILABLE)
        response = aadsts_error(status, error, code, description)
        response.headers.update(headers)
        return response
    code_name, message = ERROR_CODES.get(status, ("UnknownError", "An error occurred."))
    return graph_error(status, code_name, message, headers)


_ID = r"[^/]+"
_COSTS: tuple[tuple[str, re.Pattern[str], int], ...] = tuple(
    (method, re.compile(pattern, re.I), units)
    for method, pattern, units in (
        ("GET", r"^/users/?$", 2),
        ("GET", rf"^/groups/{_ID}/members(/|$)", 3),
        ("GET", rf"^/groups/{_ID}/transitiveMembers(/|$)", 5),
        ("GET", rf"^/(me|users/{_ID})/(memberOf|transitiveMemberOf|ownedObjects)(/|$)", 2),
        ("GET", r"^/subscribedSkus", 3),
        ("GET", r"^/applications/?$", 2),
        ("GET", r"^/oauth2PermissionGrants", 2),
        ("POST", r"^/directoryObjects/getByIds", 3),
        ("POST", r"^/getObjectsById", 3),
    )
)


def resource_units(method: str, path: str, query: str = "") -> int:
    """The resource-unit cost of a Graph request, from the throttling-limits table."""
    relative = path[5:] if path.startswith("/v1.0") else path
    if re.search(r"/delta(\(\))?/?$", relative, re.I):
        return 1 if re.search(r"(^|&)\$?(deltatoken|skiptoken)=", query, re.I) else 2
    cost = next(
        (units for m, pattern, units in _COSTS if m == method.upper() and pattern.search(relative)),
        1,
    )
    lowered = query.lower()
    if "$select=" in lowered or "%24select=" in lowered:
        cost -= 1
    if "$expand=" in lowered or "%24expand=" in lowered:
        cost += 1
    top = re.search(r"(?:\$|%24)top=(\d+)", lowered)
    if top and int(top.group(1)) < 20:
        cost -= 1
    return max(1, cost)


def decide(
    state: EmulatorState,
    tenant_id: str | None,
    method: str,
    path: str,
    actions: tuple[str, ...] = ACTIONS,
    query: str = "",
) -> Decision:
    """Run the request through every fault: add up latencies, take the first failure."""
    decision = Decision()
    now = time.monotonic()
    with _lock:
        items = faults(state)
        if not items:
            return decision
        spent: list[Fault] = []
        for fault in items:
            if fault.action not in actions or not fault.matches(tenant_id, method, path):
                continue
            if fault.action in ("throttle", "error", "drop") and (
                decision.response is not None or decision.drop is not None
            ):
                continue  # the request already fails: later faults do not see it
            units = resource_units(method, path, query) if fault.cost == "resource_units" else 1
            fire, retry_after = fault.triggers(tenant_id, now, units)
            if not fire:
                continue
            fault.fired += 1
            decision.fault_ids.append(fault.id)
            if fault.action == "latency":
                decision.latency_ms += fault.latency_ms
            elif fault.action == "drop":
                decision.drop = fault.drop_mode
            else:
                decision.response = error_response(fault.status, retry_after, path)
            if fault.count is not None and fault.fired >= fault.count:
                spent.append(fault)
        for fault in spent:
            items.remove(fault)
    return decision


def check(
    state: EmulatorState, tenant_id: str | None, method: str, path: str, query: str = ""
) -> Response | None:
    """The error a request would get from the throttle and error faults, or None.

    For requests that do not go through the middleware, such as the sub-requests of a `$batch`:
    https://learn.microsoft.com/en-us/graph/throttling, "Throttling and batching": "Requests in a
    batch are evaluated individually against throttling limits and if any request exceeds the
    limits, it fails with a status of 429". Latency and dropped connections apply to the whole
    HTTP request only, so they are not considered here.
    """
    return decide(state, tenant_id, method, path, ("throttle", "error"), query).response
