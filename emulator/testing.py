"""Run the emulator inside a test process: HTTPS on a free loopback port, in a background thread.

with run_emulator(tmp_path) as emu:          # or: async with run_emulator(tmp_path) as emu
    httpx.get(f"{emu.base_url}/_emulator/tenants", verify=str(emu.ca_path))
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette

from emulator.app import EmulatorOptions, create_app, uvicorn_config
from emulator.state import EmulatorState
from emulator.tls import ensure_tls


@dataclass
class RunningEmulator:
    base_url: str  # e.g. "https://127.0.0.1:53817"
    ca_path: Path
    state: EmulatorState
    app: Starlette
    _ssl_context: ssl.SSLContext | None = field(default=None, repr=False)

    @property
    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context(cafile=str(self.ca_path))
        return self._ssl_context

    def client(self, **kwargs: Any) -> httpx.Client:
        """An httpx client for the emulator that trusts its CA."""
        return httpx.Client(base_url=self.base_url, verify=self.ssl_context, **kwargs)

    def async_client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, verify=self.ssl_context, **kwargs)


class _EmulatorThread:
    def __init__(self, state_dir: Path, host: str, port: int, opts: dict[str, Any]) -> None:
        self.state_dir = Path(state_dir)
        self.host = host
        self.port = port
        self.opts = opts
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self) -> RunningEmulator:
        tls = ensure_tls(self.state_dir)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
        # without it every small response waits ~40 ms for a delayed ACK (Nagle).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        port = sock.getsockname()[1]
        netloc = f"[{self.host}]:{port}" if family == socket.AF_INET6 else f"{self.host}:{port}"
        base_url = f"https://{netloc}"

        try:
            state = self.opts.pop("state", None) or EmulatorState()
            options = EmulatorOptions(
                base_url=base_url,
                allow_http_notifications=bool(self.opts.pop("allow_http_notifications", False)),
                request_log_size=int(self.opts.pop("request_log_size", 10_000)),
            )
            _seed(state, self.opts)
            app = create_app(state, options)
        except BaseException:
            sock.close()
            raise
        config = uvicorn_config(app, tls, self.host, port, log_level="warning")
        self.server = uvicorn.Server(config)

        def serve() -> None:
            assert self.server is not None
            # The emulator is not what a test run measures: a coverage tracer (started on every
            # thread) would only slow the stand-in cloud down.
            sys.settrace(None)
            try:
                asyncio.run(self.server.serve(sockets=[sock]))
            except BaseException as exc:  # reported to the thread that waits for start-up
                self.error = exc
            finally:
                sock.close()

        self.thread = threading.Thread(target=serve, name=f"emulator-{port}", daemon=True)
        self.thread.start()
        running = RunningEmulator(base_url, tls.ca_path, state, app)
        try:
            self._wait_ready(running)
        except BaseException:
            self.stop()
            raise
        return running

    def _wait_ready(self, running: RunningEmulator) -> None:
        assert self.server is not None and self.thread is not None
        deadline = time.monotonic() + 15
        while not self.server.started:
            if self.error is not None or not self.thread.is_alive():
                raise RuntimeError("the emulator failed to start") from self.error
            if time.monotonic() > deadline:
                raise TimeoutError("the emulator did not start within 15 s")
            time.sleep(0.005)
        # The first HTTPS round trip proves the TLS set-up, not just the listening socket.
        with running.client(timeout=5) as client:
            client.get("/_emulator/health").raise_for_status()

    def stop(self, *, abrupt: bool = False) -> None:
        if self.server is not None:
            # Abrupt: no grace for requests under way; their connections drop, as when the
            # process is killed.
            self.server.force_exit = abrupt
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)


def _seed(state: EmulatorState, opts: dict[str, Any]) -> None:
    """Options that fill the state before the server starts (same as the command line's)."""
    from emulator.control import seed_demo, seed_generated

    users = opts.pop("users", None)
    groups = opts.pop("groups", None)
    seed = opts.pop("seed", 1)
    demo = opts.pop("demo", False)
    redirect_uris = opts.pop("redirect_uris", ())
    if opts:
        raise TypeError(f"unknown emulator options: {', '.join(sorted(opts))}")
    if demo:
        seed_demo(state, users=users, groups=groups, seed=seed, redirect_uris=redirect_uris)
    elif users is not None or groups is not None:
        seed_generated(state, users or 0, groups or 0, seed)


class run_emulator(contextlib.AbstractContextManager["RunningEmulator"]):
    """Start the emulator (HTTPS, free loopback port, background thread) for a `with` block.

    Options: `state` (an EmulatorState to serve), `allow_http_notifications`, `host`
    (default 127.0.0.1), `port` (default 0: a free one), `request_log_size`, and seeding:
    `users`, `groups`, `seed`, `demo`, `redirect_uris`. Works as `with` and as `async with`.
    """

    def __init__(
        self, state_dir: Path, host: str = "127.0.0.1", port: int = 0, **opts: Any
    ) -> None:
        self._runner = _EmulatorThread(Path(state_dir), host, port, dict(opts))

    def __enter__(self) -> RunningEmulator:
        return self._runner.start()

    def kill(self) -> None:
        """Stop serving at once: requests under way lose their connections."""
        self._runner.stop(abrupt=True)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._runner.stop()

    async def __aenter__(self) -> RunningEmulator:
        return await asyncio.to_thread(self._runner.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self._runner.stop)
