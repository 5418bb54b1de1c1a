"""Pausing coverage's tracer while a test runs code coverage does not measure (the emulator's
generator, schemathesis's own generation, the PostgreSQL pass): traced, it runs several times
slower."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from types import FrameType
from typing import Any


@contextmanager
def untraced(*, threads: bool = False) -> Iterator[None]:
    """This thread untraced; with `threads`, the threads started meanwhile too."""
    tracer, thread_tracer = sys.gettrace(), threading.gettrace()
    sys.settrace(None)
    if threads:
        # typeshed types the hook as a function only; None removes it, as sys.settrace(None) does.
        threading.settrace(None)  # type: ignore[arg-type]
    try:
        yield
    finally:
        if threads:
            threading.settrace(thread_tracer)
        sys.settrace(tracer)


def sqlite_threads_untraced() -> None:
    """Start aiosqlite's connection threads without coverage's tracer. They run no code of the
    service (SQLite's calls only), and a traced thread holds greenlet state (coverage follows
    greenlets), which greenlet destroys from the main thread when the thread ends: thousands of
    short-lived threads paid for that, and a worker once spun there for good."""
    install = threading.gettrace()
    if install is None:
        return

    def hook(frame: FrameType, event: str, arg: Any) -> Any:
        sys.settrace(None)
        target = getattr(threading.current_thread(), "_target", None)
        if getattr(target, "__module__", None) == "aiosqlite.core":
            return None
        return install(frame, event, arg)

    threading.settrace(hook)


def traced_executor() -> ThreadPoolExecutor | None:
    """A pool for `asyncio.to_thread` whose threads coverage always measures. The loop's default
    pool starts its threads when first needed and keeps them: one started during an untraced test
    (the PostgreSQL pass) would leave what later tests run there (MSAL's calls, the planners, the
    command line) unmeasured, so the figure would depend on the order the tests ran in."""
    install = threading.gettrace()
    if install is None:
        return None
    return ThreadPoolExecutor(
        thread_name_prefix="traced", initializer=sys.settrace, initargs=(install,)
    )
