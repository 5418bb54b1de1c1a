"""`GET /applications/{id}` and `GET /applications(appId='{appId}')`: an app registration with its
password credentials, as https://learn.microsoft.com/en-us/graph/api/application-get describes:
"secretText" is never returned after creation, "hint" holds the secret's first characters and
"endDateTime" its expiry. Permissions (same page): delegated Application.Read.All (or the wider
Directory.Read.All), application Application.Read.All.
"""

from __future__ import annotations

from typing import Any

from emulator.graph.access import require_permission
from emulator.graph.http import GraphRequest, GraphResponse, not_found, router
from emulator.state import App

APPLICATION_READ = (
    ("Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All"),
    ("Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All"),
)


def _iso(value: Any) -> str:
    return str(value.isoformat().replace("+00:00", "Z"))


def application_json(app: App) -> dict[str, Any]:
    return {
        "id": app.service_principal_id,
        "appId": app.app_id,
        "displayName": app.display_name,
        "web": {"redirectUris": list(app.redirect_uris)},
        "passwordCredentials": [
            {
                "customKeyIdentifier": None,
                "displayName": s.display_name,
                "endDateTime": _iso(s.end_date_time),
                "hint": s.hint,
                "keyId": s.key_id,
                "secretText": None,
                "startDateTime": _iso(s.start_date_time),
            }
            for s in app.secrets
        ],
    }


def _respond(request: GraphRequest, app: App) -> GraphResponse:
    body = application_json(app)
    raw = request.query.get("$select")
    if raw:
        wanted = {name.strip() for name in raw.split(",") if name.strip()}
        body = {k: v for k, v in body.items() if k in wanted or k == "id"}
    return GraphResponse(200, {"@odata.context": request.context("applications/$entity"), **body})


@router.route("GET", "/applications/byAppId/{app_id}")
async def get_by_app_id(request: GraphRequest) -> GraphResponse:
    caller = request.caller()
    require_permission(caller, *APPLICATION_READ)
    app = caller.tenant.apps.get(request.params["app_id"])
    if app is None:
        raise not_found(request.params["app_id"])
    return _respond(request, app)


@router.route("GET", "/applications/{id}")
async def get_application(request: GraphRequest) -> GraphResponse:
    caller = request.caller()
    require_permission(caller, *APPLICATION_READ)
    for app in caller.tenant.apps.values():
        if app.service_principal_id == request.params["id"]:
            return _respond(request, app)
    raise not_found(request.params["id"])
