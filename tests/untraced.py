"""Pausing coverage's tracer while a test runs code coverage does not measure (the emulator's
generator, schemathesis's own generation, the PostgreSQL pass): traced, it runs several times
slower."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager


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
