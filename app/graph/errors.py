"""Errors from Microsoft Graph."""

from __future__ import annotations

from typing import Any


class GraphError(Exception):
    """Graph answered with an error (or could not be reached after the retries)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        super().__init__(f"{status} {code}: {message}")

    @property
    def sync_state_lost(self) -> bool:
        # An expired or unknown delta token: the next run must list everything again.
        return self.status == 410 or self.code in {
            "syncStateNotFound",
            "resyncRequired",
            "SyncStateNotFound",
        }


def batch_error(status: int, body: Any) -> GraphError:
    """The error of one $batch answer."""
    err = body.get("error", {}) if isinstance(body, dict) else {}
    return GraphError(status, str(err.get("code", "batch_error")), str(err.get("message", "")))
