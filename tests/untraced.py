"""Pausing coverage's tracer in this thread while a test runs code coverage does not measure (the
emulator's generator, schemathesis's own generation): traced, it runs several times slower."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def untraced() -> Iterator[None]:
    tracer = sys.gettrace()
    sys.settrace(None)
    try:
        yield
    finally:
        sys.settrace(tracer)
