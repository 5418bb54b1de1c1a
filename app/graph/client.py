"""An async Microsoft Graph client on httpx: auth, paging, delta rounds, $batch, retries.

It knows nothing of PBXes: it is given a token source and a request budget for retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx

from app import metrics
from app.clock import Clock
from app.graph.errors import GraphError

log = logging.getLogger("pbx_entra.graph")
TokenSource = Callable[[bool], Awaitable[str]]  # force_refresh -> access token
RETRY_STATUSES = {429, 500, 502, 503, 504}
# getPresencesByUserId takes at most 650 user ids a request (cloudcommunications-getpresencesbyuserid).
MAX_PRESENCE_IDS = 650


@functools.lru_cache(maxsize=8)
def ssl_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """One context per CA bundle for the process (each takes OpenSSL ~20 ms to build)."""
    return ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)


@dataclass
class RetryPolicy:
    """Bounds on how long Graph may make us wait: per attempt and for one request in all."""

    max_attempts: int = 6
    max_retry_after: float = 120.0
    max_total_wait: float = 300.0
    base_backoff: float = 0.5


@dataclass
class CallStats:
    requests: int = 0
    throttled: int = 0
    retries: int = 0
    waited: float = 0.0
    by_path: dict[str, int] = field(default_factory=dict)


@dataclass
class Page:
    items: list[dict[str, Any]]
    next_link: str | None
    delta_link: str | None
    raw: dict[str, Any]


def retry_after_seconds(response: httpx.Response, now: datetime | None = None) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            moment = now or datetime.now(UTC)
            return max(0.0, (parsedate_to_datetime(value) - moment).total_seconds())
        except (TypeError, ValueError):
            return None


def _graph_error(response: httpx.Response) -> GraphError:
    try:
        err = response.json().get("error", {})
        return GraphError(
            response.status_code, str(err.get("code", "")), str(err.get("message", ""))
        )
    except (ValueError, AttributeError):
        return GraphError(response.status_code, "http_error", response.text[:200])


class GraphClient:
    def __init__(
        self,
        base_url: str,
        token: TokenSource,
        *,
        http: httpx.AsyncClient,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._http = http
        self.retry = retry or RetryPolicy()
        # Backoff and Retry-After waits: the runtime's clock (a fake one in tests).
        self.clock = clock or Clock()
        self.stats = CallStats()

    @staticmethod
    def http_client(ca_bundle: Path | None, timeout: float = 30.0) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            verify=ssl_context(ca_bundle),
            timeout=httpx.Timeout(timeout, connect=10.0),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
            trust_env=False,
        )

    def url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("https://", "http://")):
            return path_or_url
        return f"{self.base_url}/{path_or_url.lstrip('/')}"

    async def request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One Graph call with auth, retries on throttling and transient faults, parsed JSON."""
        url = self.url(path_or_url)
        waited = 0.0
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            token = await self._token(False)
            hdrs = {
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                **(headers or {}),
            }
            self.stats.requests += 1
            try:
                response = await self._http.request(
                    method, url, params=params, json=json_body, headers=hdrs
                )
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                metrics.graph_requests.labels("error").inc()
                delay = self._backoff(attempt)
                if attempt >= self.retry.max_attempts or waited + delay > self.retry.max_total_wait:
                    raise GraphError(0, "unreachable", f"{type(exc).__name__}: {exc}") from None
                self.stats.retries += 1
                waited += delay
                await self._pause(delay)
                continue
            metrics.graph_requests.labels(f"{response.status_code // 100}xx").inc()
            if response.status_code < 400:
                if response.status_code == 204 or not response.content:
                    return {}
                body: dict[str, Any] = json.loads(response.content)
                return body
            if response.status_code == 401 and not refreshed:
                # The token may have been revoked or rotated early: refresh once and retry.
                refreshed = True
                await self._token(True)
                continue
            if response.status_code in RETRY_STATUSES:
                if response.status_code in (429, 503, 504):
                    self.stats.throttled += 1
                    metrics.graph_throttled.inc()
                hinted = retry_after_seconds(response, self.clock.now())
                delay = (
                    min(hinted, self.retry.max_retry_after)
                    if hinted is not None
                    else self._backoff(attempt)
                )
                if attempt >= self.retry.max_attempts or waited + delay > self.retry.max_total_wait:
                    raise _graph_error(response)
                self.stats.retries += 1
                waited += delay
                log.info(
                    "graph %s, retrying in %.1fs",
                    response.status_code,
                    delay,
                    extra={"fields": {"graph_status": response.status_code}},
                )
                await self._pause(delay)
                continue
            raise _graph_error(response)

    def _backoff(self, attempt: int) -> float:
        return float(self.retry.base_backoff * (2 ** (attempt - 1)) * (0.5 + random.random()))

    async def _pause(self, seconds: float) -> None:
        self.stats.waited += seconds
        await self.clock.sleep(seconds)

    async def get(
        self, path_or_url: str, params: dict[str, Any] | None = None, **kw: Any
    ) -> dict[str, Any]:
        return await self.request("GET", path_or_url, params=params, **kw)

    async def pages(
        self,
        path_or_url: str,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> AsyncIterator[Page]:
        """Follow @odata.nextLink to the end (and expose a final @odata.deltaLink).

        The next page is requested as soon as this one is parsed, so the caller's work on a
        page overlaps the wait for the next one."""
        pending: asyncio.Task[dict[str, Any]] | None = asyncio.create_task(
            self.get(path_or_url, params=params, headers=headers)
        )
        try:
            while pending is not None:
                body = await pending
                next_link = body.get("@odata.nextLink")
                # nextLink and deltaLink carry the whole query.
                pending = (
                    asyncio.create_task(self.get(next_link, headers=headers)) if next_link else None
                )
                yield Page(
                    items=body.get("value", []),
                    next_link=next_link,
                    delta_link=body.get("@odata.deltaLink"),
                    raw=body,
                )
        finally:
            if pending is not None and not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, GraphError):
                    await pending

    async def get_each(self, urls: list[str]) -> list[tuple[int, Any]]:
        """GET each relative URL through $batch: (status, body) per URL, in order."""
        requests = [{"id": str(i), "method": "GET", "url": url} for i, url in enumerate(urls)]
        responses = await self.batch(requests) if requests else {}
        out = []
        for i in range(len(urls)):
            resp = responses.get(str(i), {})
            out.append((int(resp.get("status", 0)), resp.get("body")))
        return out

    async def batch(self, requests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Run GET sub-requests through $batch (20 a call); throttled ones are retried alone."""
        results: dict[str, dict[str, Any]] = {}
        pending = list(requests)
        rounds = 0
        while pending:
            rounds += 1
            retry: list[dict[str, Any]] = []
            delay = 0.0
            for start in range(0, len(pending), 20):
                chunk = pending[start : start + 20]
                body = await self.request("POST", "$batch", json_body={"requests": chunk})
                by_id = {r["id"]: r for r in chunk}
                for resp in body.get("responses", []):
                    status = int(resp.get("status", 0))
                    if status in (429, 503, 504) and rounds < self.retry.max_attempts:
                        self.stats.throttled += 1
                        hinted = (resp.get("headers") or {}).get("Retry-After")
                        delay = max(delay, min(float(hinted or 1), self.retry.max_retry_after))
                        retry.append(by_id[resp["id"]])
                    else:
                        results[str(resp["id"])] = resp
            if retry:
                await self._pause(delay)
            pending = retry
        return results

    async def presences(self, user_ids: list[str], concurrency: int = 4) -> list[dict[str, Any]]:
        """Teams presence of these users: `POST /communications/getPresencesByUserId`, 650 ids a
        request, a few requests in flight; each item holds `id`, `availability`, `activity`."""
        ids = list(dict.fromkeys(user_ids))
        gate = asyncio.Semaphore(concurrency)

        async def one(chunk: list[str]) -> list[dict[str, Any]]:
            async with gate:
                body = await self.request(
                    "POST", "communications/getPresencesByUserId", json_body={"ids": chunk}
                )
            return [v for v in body.get("value", []) if isinstance(v, dict)]

        chunks = [ids[i : i + MAX_PRESENCE_IDS] for i in range(0, len(ids), MAX_PRESENCE_IDS)]
        return [item for part in await asyncio.gather(*(one(c) for c in chunks)) for item in part]
