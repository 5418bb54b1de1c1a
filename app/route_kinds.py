"""Who may call a path, and how large its body may be: read by the request guard and by the
OpenAPI document's list of answers alike."""

from __future__ import annotations

API_BODY_LIMIT = 1024 * 1024
WEBHOOK_BODY_LIMIT = 4 * 1024 * 1024


def route_kind(path: str) -> str:
    """operator | pbx | sso (a Linkus SSO access token) | webhook | public."""
    if path == "/api/v1/pbxes" or path.startswith("/api/v1/pbxes/"):
        return "operator"
    if path == "/api/v1/me" or path.startswith("/api/v1/me/") or path == "/sso/userinfo":
        return "sso"
    if path.startswith("/api/v1/"):
        return "pbx"
    if path.startswith("/webhooks/"):
        return "webhook"
    return "public"


def body_limit(kind: str) -> int:
    return WEBHOOK_BODY_LIMIT if kind == "webhook" else API_BODY_LIMIT
