"""The control API under /_emulator: seed tenants, register apps, change the directory, inject
faults and read the request log. JSON in and out, no authentication (it listens on loopback).

Users, groups and contacts use Graph's camelCase property names, so Graph documentation payloads
can be posted as they are. Errors come in Graph's error shape.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulator import faults, mutations, tokens
from emulator.errors import graph_error
from emulator.mutations import MutationError
from emulator.state import App, EmulatorState, Secret, Tenant, utcnow

Handler = Callable[[Request], Awaitable[Response]]

DEMO_TENANT_ID = "5f0c4b8e-2d3a-4e6f-9a1b-7c8d9e0f1a2b"
DEMO_CLIENT_ID = "0d4b6f5e-8a2c-4c1e-9b3d-2e7f8a9b0c1d"
DEMO_CLIENT_SECRET = "dem8Q~pbxEntraDemoSecretValue00000000001"
DEMO_DOMAIN = "contoso.onmicrosoft.com"
DEMO_REDIRECT_URIS = (
    "http://127.0.0.1:8000/integration/callback",
    "http://127.0.0.1:8000/sso/callback",
)


class ControlError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _endpoint(handler: Handler) -> Handler:
    async def wrapped(request: Request) -> Response:
        try:
            state: EmulatorState = request.app.state.emulator
            with state.lock:
                return await handler(request)
        except (ControlError, MutationError, faults.FaultError) as exc:
            status = getattr(exc, "status", 400)
            code = getattr(exc, "code", "BadRequest")
            return graph_error(status, code, getattr(exc, "message", str(exc)))

    return wrapped


def _state(request: Request) -> EmulatorState:
    state: EmulatorState = request.app.state.emulator
    return state


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise ControlError(400, "BadRequest", "The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ControlError(400, "BadRequest", "The body must be a JSON object.")
    return data


def _tenant(request: Request) -> Tenant:
    tenant_id = request.path_params["tid"]
    tenant = _state(request).tenant(tenant_id)
    if tenant is None:
        raise ControlError(404, "Request_ResourceNotFound", f"Tenant '{tenant_id}' not found.")
    return tenant


def _app(request: Request, tenant: Tenant) -> App:
    app_id = request.path_params["app_id"]
    app = tenant.apps.get(app_id)
    if app is None:
        raise ControlError(404, "Request_ResourceNotFound", f"App '{app_id}' not found.")
    return app


def _iso(value: Any) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _int(data: dict[str, Any], name: str, default: int) -> int:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ControlError(400, "BadRequest", f"{name} must be a non-negative integer.")
    return value


# --- serialisation ----------------------------------------------------------------------------


def tenant_summary(tenant: Tenant) -> dict[str, Any]:
    admin = mutations.admin_user(tenant)
    return {
        "id": tenant.id,
        "display_name": tenant.display_name,
        "domain": tenant.domain,
        "users": len(tenant.users),
        "groups": len(tenant.groups),
        "apps": sorted(tenant.apps),
        "admin": None
        if admin is None
        else {"id": admin.id, "upn": admin.user_principal_name, "password": admin.password},
        "settings": settings_json(tenant),
        "seq": tenant.seq,
        "min_valid_delta_seq": tenant.min_valid_delta_seq,
    }


def settings_json(tenant: Tenant) -> dict[str, Any]:
    s = tenant.settings
    return {
        "auto_consent_user": s.auto_consent_user,
        "access_token_lifetime": s.access_token_lifetime,
        "refresh_token_lifetime": s.refresh_token_lifetime,
        "code_lifetime": s.code_lifetime,
    }


def secret_json(secret: Secret, with_value: bool = False) -> dict[str, Any]:
    body = {
        "key_id": secret.key_id,
        "display_name": secret.display_name,
        "hint": secret.hint,
        "start_date_time": _iso(secret.start_date_time),
        "end_date_time": _iso(secret.end_date_time),
        "expired": secret.end_date_time <= utcnow(),
    }
    if with_value:
        body["value"] = secret.value
    return body


def app_json(app: App) -> dict[str, Any]:
    return {
        "app_id": app.app_id,
        "display_name": app.display_name,
        "redirect_uris": list(app.redirect_uris),
        "app_roles": sorted(app.app_roles),
        "consented_scopes": sorted(app.consented_scopes),
        "user_consents": {uid: sorted(scopes) for uid, scopes in app.user_consents.items()},
        "service_principal_id": app.service_principal_id,
        "secrets": [secret_json(s) for s in app.secrets],
    }


# --- tenants ----------------------------------------------------------------------------------


@_endpoint
async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok", "tenants": len(_state(request).tenants)})


@_endpoint
async def create_tenant(request: Request) -> Response:
    data = await _body(request)
    display_name = data.get("display_name") or data.get("displayName") or "Contoso"
    domain = str(data.get("domain") or "contoso.onmicrosoft.com")
    users, groups = data.get("users", 0), data.get("groups", 0)
    explicit_users = users if isinstance(users, list) else []
    explicit_groups = groups if isinstance(groups, list) else []
    tenant = mutations.create_tenant(
        _state(request),
        display_name=str(display_name),
        domain=domain,
        tenant_id=data.get("id"),
        users=0 if explicit_users else _int(data, "users", 0),
        groups=0 if explicit_groups else _int(data, "groups", 0),
        seed=_int(data, "seed", 1),
        admin_password=data.get("admin_password"),
    )
    try:
        for payload in explicit_users:
            mutations.create_user(tenant, payload)
        for payload in explicit_groups:
            mutations.create_group(tenant, payload)
    except MutationError:
        _state(request).tenants.pop(tenant.id, None)
        raise
    return JSONResponse(tenant_summary(tenant), status_code=201)


@_endpoint
async def list_tenants(request: Request) -> Response:
    return JSONResponse({"value": [tenant_summary(t) for t in _state(request).tenants.values()]})


@_endpoint
async def get_tenant(request: Request) -> Response:
    return JSONResponse(tenant_summary(_tenant(request)))


@_endpoint
async def delete_tenant(request: Request) -> Response:
    mutations.delete_tenant(_state(request), request.path_params["tid"])
    return Response(status_code=204)


@_endpoint
async def put_settings(request: Request) -> Response:
    tenant = _tenant(request)
    data = await _body(request)
    settings = tenant.settings
    if "auto_consent_user" in data:
        upn = data["auto_consent_user"]
        if upn is not None and tenant.find_user(str(upn)) is None:
            raise ControlError(400, "BadRequest", f"No user '{upn}' in the tenant.")
        settings.auto_consent_user = upn
    for name in ("access_token_lifetime", "refresh_token_lifetime", "code_lifetime"):
        if name in data:
            value = data[name]
            if isinstance(value, bool) or not isinstance(value, int):
                raise ControlError(400, "BadRequest", f"{name} must be an integer (seconds).")
            setattr(settings, name, value)
    return JSONResponse(settings_json(tenant))


@_endpoint
async def get_settings(request: Request) -> Response:
    return JSONResponse(settings_json(_tenant(request)))


@_endpoint
async def expire_delta_tokens(request: Request) -> Response:
    tenant = _tenant(request)
    return JSONResponse({"min_valid_delta_seq": mutations.expire_delta_tokens(tenant)})


@_endpoint
async def rotate_keys(request: Request) -> Response:
    tenant = _tenant(request)
    data = await _body(request)
    tokens.rotate_keys(tenant, keep_previous=bool(data.get("keep_previous", True)))
    return JSONResponse({"kids": [k.kid for k in tenant.signing_keys]})


@_endpoint
async def add_id_token_tamper(request: Request) -> Response:
    """Alter the tenant's next ID tokens (claims replaced or dropped, or a foreign signature)."""
    tenant = _tenant(request)
    data = await _body(request)
    claims = data.get("claims", {})
    drop = data.get("drop", [])
    signing = data.get("signing", "tenant")
    if not isinstance(claims, dict) or not isinstance(drop, list):
        raise ControlError(400, "BadRequest", "claims must be an object and drop a list.")
    if signing not in tokens.TAMPER_SIGNING:
        raise ControlError(
            400, "BadRequest", f"signing must be one of {', '.join(tokens.TAMPER_SIGNING)}."
        )
    count = _int(data, "count", 1)
    if count < 1:
        raise ControlError(400, "BadRequest", "count must be at least 1.")
    tamper = tokens.IdTokenTamper(
        claims=claims, drop=[str(d) for d in drop], signing=signing, count=count
    )
    tokens.id_token_tampering(_state(request), tenant).append(tamper)
    return JSONResponse(tamper.to_json(), status_code=201)


@_endpoint
async def list_id_token_tampering(request: Request) -> Response:
    pending = tokens.id_token_tampering(_state(request), _tenant(request))
    return JSONResponse({"value": [t.to_json() for t in pending]})


@_endpoint
async def clear_id_token_tampering(request: Request) -> Response:
    tokens.id_token_tampering(_state(request), _tenant(request)).clear()
    return Response(status_code=204)


@_endpoint
async def list_changes(request: Request) -> Response:
    tenant = _tenant(request)
    since = int(request.query_params.get("since", "0"))
    items = [
        {
            "seq": e.seq,
            "kind": e.kind,
            "object_id": e.object_id,
            "change_type": e.change_type,
            "member_id": e.member_id,
            "added": e.added,
            "removed_reason": e.removed_reason,
            "owner_id": e.owner_id,
            "folder_id": e.folder_id,
            "at": e.at.isoformat(),
        }
        for e in tenant.changes
        if e.seq > since
    ]
    return JSONResponse({"value": items, "seq": tenant.seq})


@_endpoint
async def mint_token(request: Request) -> Response:
    """An access token minted directly (no OAuth flow), for tests of the Graph routes."""
    tenant = _tenant(request)
    data = await _body(request)
    app = tenant.apps.get(str(data.get("app_id", "")))
    if app is None:
        raise ControlError(400, "BadRequest", "app_id must name a registered app.")
    user = None
    if data.get("user"):
        user = mutations.get_user(tenant, str(data["user"]))
    scopes = set(data.get("scopes") or [])
    given_roles = data.get("roles")
    roles = set(app.app_roles if given_roles is None else given_roles)
    lifetime = data.get("expires_in")
    token = tokens.issue_access_token(
        _state(request),
        tenant,
        app,
        user,
        scopes=scopes if user else set(),
        roles=set() if user else roles,
        lifetime=None if lifetime is None else int(lifetime),
    )
    return JSONResponse({"access_token": token, "token_type": "Bearer"})


# --- apps and secrets -------------------------------------------------------------------------


def _register(tenant: Tenant, data: dict[str, Any]) -> tuple[App, Secret | None]:
    redirect_uris = data.get("redirect_uris") or []
    if not isinstance(redirect_uris, list):
        raise ControlError(400, "BadRequest", "redirect_uris must be a list.")
    app = mutations.register_app(
        tenant,
        display_name=str(data.get("display_name") or data.get("displayName") or "pbx-entra"),
        redirect_uris=[str(u) for u in redirect_uris],
        app_id=data.get("app_id"),
        app_roles=data.get("app_roles"),
    )
    for scope in data.get("consented_scopes") or []:
        app.consented_scopes.add(str(scope))
    secret = None
    spec = data.get("secret", {})
    if spec is not None:
        secret = mutations.add_secret(
            app,
            value=spec.get("value"),
            expires_in_days=float(spec.get("expires_in_days", 365)),
            display_name=str(spec.get("display_name", "secret")),
        )
    return app, secret


@_endpoint
async def create_app(request: Request) -> Response:
    tenant = _tenant(request)
    app, secret = _register(tenant, await _body(request))
    body = app_json(app)
    body["secret"] = None if secret is None else secret_json(secret, with_value=True)
    return JSONResponse(body, status_code=201)


@_endpoint
async def list_apps(request: Request) -> Response:
    return JSONResponse({"value": [app_json(a) for a in _tenant(request).apps.values()]})


@_endpoint
async def get_app(request: Request) -> Response:
    tenant = _tenant(request)
    return JSONResponse(app_json(_app(request, tenant)))


@_endpoint
async def patch_app(request: Request) -> Response:
    tenant = _tenant(request)
    app = _app(request, tenant)
    data = await _body(request)
    if "redirect_uris" in data:
        app.redirect_uris = [str(u) for u in data["redirect_uris"] or []]
    if "app_roles" in data:
        app.app_roles = set(data["app_roles"] or [])
    if "consented_scopes" in data:
        app.consented_scopes = set(data["consented_scopes"] or [])
    if "display_name" in data:
        app.display_name = str(data["display_name"])
    return JSONResponse(app_json(app))


@_endpoint
async def delete_app(request: Request) -> Response:
    tenant = _tenant(request)
    app = _app(request, tenant)
    del tenant.apps[app.app_id]
    return Response(status_code=204)


@_endpoint
async def revoke_consent(request: Request) -> Response:
    tenant = _tenant(request)
    mutations.revoke_consent(tenant, _app(request, tenant))
    return Response(status_code=204)


@_endpoint
async def add_secret(request: Request) -> Response:
    tenant = _tenant(request)
    app = _app(request, tenant)
    data = await _body(request)
    secret = mutations.add_secret(
        app,
        value=data.get("value"),
        expires_in_days=float(data.get("expires_in_days", 365)),
        display_name=str(data.get("display_name", "secret")),
    )
    return JSONResponse(secret_json(secret, with_value=True), status_code=201)


@_endpoint
async def expire_secret(request: Request) -> Response:
    tenant = _tenant(request)
    app = _app(request, tenant)
    secret = mutations.expire_secret(app, request.path_params["key_id"])
    return JSONResponse(secret_json(secret))


@_endpoint
async def delete_secret(request: Request) -> Response:
    tenant = _tenant(request)
    mutations.remove_secret(_app(request, tenant), request.path_params["key_id"])
    return Response(status_code=204)


# --- users ------------------------------------------------------------------------------------


@_endpoint
async def list_users(request: Request) -> Response:
    tenant = _tenant(request)
    skip = int(request.query_params.get("skip", "0"))
    top = int(request.query_params.get("top", "100"))
    users = list(tenant.users.values())[skip : skip + top]
    return JSONResponse(
        {"value": [mutations.user_to_json(u) for u in users], "count": len(tenant.users)}
    )


@_endpoint
async def create_user(request: Request) -> Response:
    tenant = _tenant(request)
    user = mutations.create_user(tenant, await _body(request))
    return JSONResponse(mutations.user_to_json(user), status_code=201)


@_endpoint
async def get_user(request: Request) -> Response:
    tenant = _tenant(request)
    return JSONResponse(mutations.user_to_json(mutations.get_user(tenant, _uid(request))))


def _uid(request: Request) -> str:
    return str(request.path_params["uid"])


@_endpoint
async def patch_user(request: Request) -> Response:
    tenant = _tenant(request)
    user = mutations.update_user(tenant, _uid(request), await _body(request))
    return JSONResponse(mutations.user_to_json(user))


@_endpoint
async def delete_user(request: Request) -> Response:
    mutations.hard_delete_user(_tenant(request), _uid(request))
    return Response(status_code=204)


def _user_action(action: Callable[[Tenant, str], Any]) -> Handler:
    @_endpoint
    async def handler(request: Request) -> Response:
        tenant = _tenant(request)
        action(tenant, _uid(request))
        user = mutations.get_user(tenant, _uid(request))
        return JSONResponse(mutations.user_to_json(user))

    return handler


@_endpoint
async def add_mailbox_member(request: Request) -> Response:
    tenant = _tenant(request)
    data = await _body(request)
    mutations.add_mailbox_member(tenant, _uid(request), str(data.get("user_id", "")))
    return JSONResponse(mutations.user_to_json(mutations.get_user(tenant, _uid(request))))


@_endpoint
async def remove_mailbox_member(request: Request) -> Response:
    tenant = _tenant(request)
    mutations.remove_mailbox_member(tenant, _uid(request), request.path_params["member_id"])
    return Response(status_code=204)


@_endpoint
async def put_presence(request: Request) -> Response:
    tenant = _tenant(request)
    data = await _body(request)
    presence = mutations.set_presence(
        tenant, _uid(request), str(data.get("availability", "")), data.get("activity")
    )
    return JSONResponse({"availability": presence.availability, "activity": presence.activity})


# --- groups -----------------------------------------------------------------------------------


@_endpoint
async def list_groups(request: Request) -> Response:
    tenant = _tenant(request)
    return JSONResponse({"value": [mutations.group_to_json(g) for g in tenant.groups.values()]})


@_endpoint
async def create_group(request: Request) -> Response:
    tenant = _tenant(request)
    group = mutations.create_group(tenant, await _body(request))
    return JSONResponse(mutations.group_to_json(group), status_code=201)


@_endpoint
async def get_group(request: Request) -> Response:
    tenant = _tenant(request)
    group = mutations.get_group(tenant, request.path_params["gid"])
    return JSONResponse(mutations.group_to_json(group))


@_endpoint
async def patch_group(request: Request) -> Response:
    tenant = _tenant(request)
    group = mutations.update_group(tenant, request.path_params["gid"], await _body(request))
    return JSONResponse(mutations.group_to_json(group))


@_endpoint
async def delete_group(request: Request) -> Response:
    tenant = _tenant(request)
    permanent = request.query_params.get("permanent")
    mutations.delete_group(
        tenant,
        request.path_params["gid"],
        permanent=None if permanent is None else permanent.lower() == "true",
    )
    return Response(status_code=204)


@_endpoint
async def restore_group(request: Request) -> Response:
    tenant = _tenant(request)
    group = mutations.restore_group(tenant, request.path_params["gid"])
    return JSONResponse(mutations.group_to_json(group))


@_endpoint
async def add_members(request: Request) -> Response:
    """Body: `{"id"}`, `{"ids": [...]}`, or Graph's `{"@odata.id": ".../directoryObjects/{id}"}`."""
    tenant = _tenant(request)
    data = await _body(request)
    ids: list[str] = [str(i) for i in data.get("ids") or []]
    if data.get("id"):
        ids.append(str(data["id"]))
    if data.get("@odata.id"):
        ids.append(str(data["@odata.id"]).rstrip("/").rsplit("/", 1)[-1])
    if not ids:
        raise ControlError(400, "BadRequest", "Give id, ids or @odata.id.")
    group_id = request.path_params["gid"]
    for member_id in ids:
        user = tenant.find_user(member_id)
        mutations.add_member(tenant, group_id, user.id if user else member_id)
    return JSONResponse(mutations.group_to_json(mutations.get_group(tenant, group_id)))


@_endpoint
async def remove_member(request: Request) -> Response:
    tenant = _tenant(request)
    mutations.remove_member(tenant, request.path_params["gid"], request.path_params["member_id"])
    return Response(status_code=204)


# --- contacts ---------------------------------------------------------------------------------


@_endpoint
async def list_folders(request: Request) -> Response:
    tenant = _tenant(request)
    owner = mutations.get_user(tenant, _uid(request))
    folders = [f for f in tenant.contact_folders.values() if f.owner_id == owner.id]
    return JSONResponse({"value": [mutations.folder_to_json(f) for f in folders]})


@_endpoint
async def create_folder(request: Request) -> Response:
    tenant = _tenant(request)
    data = await _body(request)
    folder = mutations.create_folder(
        tenant, _uid(request), str(data.get("displayName") or data.get("display_name") or "")
    )
    return JSONResponse(mutations.folder_to_json(folder), status_code=201)


@_endpoint
async def delete_folder(request: Request) -> Response:
    mutations.delete_folder(_tenant(request), request.path_params["fid"])
    return Response(status_code=204)


@_endpoint
async def share_folder(request: Request) -> Response:
    """Body: `{"user_id", "shared": true|false}`."""
    tenant = _tenant(request)
    data = await _body(request)
    fid = request.path_params["fid"]
    mutations.share_folder(
        tenant, fid, str(data.get("user_id", "")), bool(data.get("shared", True))
    )
    return JSONResponse(mutations.folder_to_json(mutations.get_folder(tenant, fid)))


@_endpoint
async def list_contacts(request: Request) -> Response:
    tenant = _tenant(request)
    folder = mutations.get_folder(tenant, request.path_params["fid"])
    return JSONResponse({"value": [mutations.contact_to_json(c) for c in folder.contacts.values()]})


@_endpoint
async def create_contact(request: Request) -> Response:
    tenant = _tenant(request)
    contact = mutations.create_contact(tenant, request.path_params["fid"], await _body(request))
    return JSONResponse(mutations.contact_to_json(contact), status_code=201)


@_endpoint
async def create_default_contact(request: Request) -> Response:
    tenant = _tenant(request)
    folder = mutations.default_folder(tenant, _uid(request))
    contact = mutations.create_contact(tenant, folder.id, await _body(request))
    body = mutations.contact_to_json(contact)
    body["parentFolderId"] = folder.id
    return JSONResponse(body, status_code=201)


@_endpoint
async def patch_contact(request: Request) -> Response:
    tenant = _tenant(request)
    contact = mutations.update_contact(tenant, request.path_params["cid"], await _body(request))
    return JSONResponse(mutations.contact_to_json(contact))


@_endpoint
async def load_contacts(request: Request) -> Response:
    """Contacts at scale (benchmarks): `{"owners": [uid, …] | "all_members": true,
    "per_owner": 200, "share_with": uid, "mailboxes": 5, "per_mailbox": 2000, "member": uid,
    "seed": 1}` → `{"owners": n, "mailboxes": [ids]}`."""
    from emulator import generator

    tenant = _tenant(request)
    data = await _body(request)
    if data.get("all_members"):
        owners = [
            u.id
            for u in tenant.users.values()
            if u.account_enabled and u.user_type == "Member" and u.mail and not u.is_admin
        ]
    else:
        owners = [mutations.get_user(tenant, str(o)).id for o in data.get("owners", [])]
    limit = data.get("limit")
    if limit is not None:
        owners = sorted(owners)[: int(limit)]
    result = generator.load_contacts(
        tenant,
        owners=owners,
        per_owner=int(data.get("per_owner", 0)),
        share_with=data.get("share_with"),
        mailboxes=int(data.get("mailboxes", 0)),
        per_mailbox=int(data.get("per_mailbox", 0)),
        member=data.get("member"),
        seed=int(data.get("seed", 1)),
    )
    return JSONResponse(result)


@_endpoint
async def move_contact(request: Request) -> Response:
    """Body: `{"folder_id"}` → the contact under its new id."""
    tenant = _tenant(request)
    data = await _body(request)
    contact = mutations.move_contact(
        tenant, request.path_params["cid"], str(data.get("folder_id", ""))
    )
    return JSONResponse(mutations.contact_to_json(contact))


@_endpoint
async def delete_contact(request: Request) -> Response:
    mutations.delete_contact(_tenant(request), None, request.path_params["cid"])
    return Response(status_code=204)


# --- faults and the request log ---------------------------------------------------------------


@_endpoint
async def add_fault(request: Request) -> Response:
    fault = faults.add_fault(_state(request), await _body(request))
    return JSONResponse(fault.to_json(), status_code=201)


@_endpoint
async def list_faults(request: Request) -> Response:
    return JSONResponse({"value": [f.to_json() for f in faults.faults(_state(request))]})


@_endpoint
async def clear_faults(request: Request) -> Response:
    faults.clear_faults(_state(request))
    return Response(status_code=204)


@_endpoint
async def delete_fault(request: Request) -> Response:
    if not faults.remove_fault(_state(request), request.path_params["fault_id"]):
        raise ControlError(404, "NotFound", "No such fault.")
    return Response(status_code=204)


# --- Graph: delta behaviour, subscriptions, notification delivery -------------------------------


@_endpoint
async def put_graph_settings(request: Request) -> Response:
    """`{"delta_replay_rate": 0.0-1.0}`, `{"force_delta_resync": true}`,
    `{"mailbox_settings_for_members": bool}`, `{"shared_contacts_delta": bool}` for one tenant."""
    from emulator.graph import settings as graph_settings

    tenant = _tenant(request)
    data = await _body(request)
    result: dict[str, Any] = {}
    if "delta_replay_rate" in data:
        rate = float(data["delta_replay_rate"])
        if not 0.0 <= rate <= 1.0:
            raise ControlError(400, "BadRequest", "delta_replay_rate must be between 0 and 1.")
        graph_settings.set_delta_replay_rate(tenant, rate)
    if data.get("force_delta_resync"):
        result["reset_generation"] = graph_settings.force_delta_resync(tenant)
    if "mailbox_settings_for_members" in data:
        graph_settings.set_mailbox_settings_for_members(
            tenant, bool(data["mailbox_settings_for_members"])
        )
    if "shared_contacts_delta" in data:
        graph_settings.set_shared_contacts_delta(tenant, bool(data["shared_contacts_delta"]))
    result["delta_replay_rate"] = graph_settings.delta_replay_rate(tenant)
    result["mailbox_settings_for_members"] = graph_settings.mailbox_settings_for_members(tenant)
    result["shared_contacts_delta"] = graph_settings.shared_contacts_delta(tenant)
    return JSONResponse(result)


@_endpoint
async def list_graph_subscriptions(request: Request) -> Response:
    from emulator.graph import subscriptions

    tenant_id = request.query_params.get("tenant_id")
    return JSONResponse({"value": subscriptions.list_subscriptions(_state(request), tenant_id)})


@_endpoint
async def subscription_lifecycle(request: Request) -> Response:
    """`{"event": "reauthorizationRequired" | "subscriptionRemoved" | "missed"}`."""
    from emulator.graph import subscriptions

    data = await _body(request)
    event = str(data.get("event", ""))
    if event not in ("reauthorizationRequired", "subscriptionRemoved", "missed"):
        raise ControlError(
            400,
            "BadRequest",
            "event must be reauthorizationRequired, subscriptionRemoved or missed.",
        )
    if not subscriptions.trigger_lifecycle_event(
        _state(request), request.path_params["sid"], event
    ):
        raise ControlError(404, "NotFound", "No such subscription.")
    return Response(status_code=204)


@_endpoint
async def expire_graph_subscription(request: Request) -> Response:
    from emulator.graph import subscriptions

    if not subscriptions.expire_subscription(_state(request), request.path_params["sid"]):
        raise ControlError(404, "NotFound", "No such subscription.")
    return Response(status_code=204)


@_endpoint
async def put_notification_settings(request: Request) -> Response:
    """Delivery tuning: batch_window, validation_timeout, delivery_timeout, retry_delays,
    reauthorization_lead, reauthorization_grace, tick (seconds), notification_ca (a PEM path)."""
    from emulator.graph import subscriptions

    try:
        return JSONResponse(subscriptions.configure(_state(request), **(await _body(request))))
    except (ValueError, TypeError) as exc:
        raise ControlError(400, "BadRequest", str(exc)) from None


@_endpoint
async def list_deliveries(request: Request) -> Response:
    from emulator.graph import subscriptions

    return JSONResponse({"value": subscriptions.deliveries(_state(request))}, headers=None)


@_endpoint
async def list_presence_reads(request: Request) -> Response:
    """`?tenant_id=`: the getPresencesByUserId requests answered, with their ids."""
    from emulator.graph import presence

    found = presence.presence_reads(_state(request), request.query_params.get("tenant_id"))
    return JSONResponse({"value": found})


@_endpoint
async def clear_presence_reads(request: Request) -> Response:
    from emulator.graph import presence

    presence.clear_presence_reads(_state(request))
    return Response(status_code=204)


@_endpoint
async def list_requests(request: Request) -> Response:
    """`?since=<seq>&path_contains=&method=&tenant_id=&status=`: the logged requests, oldest
    first."""
    from emulator.app import request_log

    query = request.query_params
    since = int(query.get("since", "0"))
    path_contains = query.get("path_contains")
    method = query.get("method")
    tenant_id = query.get("tenant_id")
    status = query.get("status")
    items = [
        entry
        for entry in list(request_log(_state(request)))
        if entry["seq"] > since
        and (not path_contains or path_contains in entry["path"])
        and (not method or entry["method"].upper() == method.upper())
        and (not tenant_id or entry["tenant_id"] == tenant_id)
        and (not status or str(entry["status"]) == status)
    ]
    last = items[-1]["seq"] if items else since
    return JSONResponse({"value": items, "last_seq": last})


@_endpoint
async def clear_requests(request: Request) -> Response:
    from emulator.app import request_log

    request_log(_state(request)).clear()
    return Response(status_code=204)


# --- the demo tenant --------------------------------------------------------------------------


def seed_demo(
    state: EmulatorState,
    users: int | None = None,
    groups: int | None = None,
    seed: int = 1,
    redirect_uris: Iterable[str] = (),
) -> dict[str, Any]:
    """The demo tenant with fixed ids and secret (so a restarted emulator keeps working with a
    service configured from demo.json); returns the demo.json content."""
    with state.lock:
        tenant = state.tenant(DEMO_TENANT_ID) or mutations.create_tenant(
            state,
            display_name="Contoso",
            domain=DEMO_DOMAIN,
            tenant_id=DEMO_TENANT_ID,
            users=200 if users is None else users,
            groups=25 if groups is None else groups,
            seed=seed,
        )
        uris = list(dict.fromkeys([*DEMO_REDIRECT_URIS, *redirect_uris]))
        app = tenant.apps.get(DEMO_CLIENT_ID) or mutations.register_app(
            tenant, "PBX Microsoft 365 integration", uris, app_id=DEMO_CLIENT_ID
        )
        if not any(s.value == DEMO_CLIENT_SECRET for s in app.secrets):
            mutations.add_secret(app, DEMO_CLIENT_SECRET, expires_in_days=365, display_name="demo")
        admin = mutations.admin_user(tenant)
        assert admin is not None
        tenant.settings.auto_consent_user = admin.user_principal_name
    return {
        "base_url": state.base_url,
        "tenant_id": tenant.id,
        "client_id": app.app_id,
        "client_secret": DEMO_CLIENT_SECRET,
        "admin_upn": admin.user_principal_name,
        "admin_password": admin.password,
        "redirect_uris": uris,
        "secret_expires_at": _iso(utcnow() + timedelta(days=365)),
    }


def seed_generated(state: EmulatorState, users: int, groups: int, seed: int = 1) -> Tenant:
    """A generated tenant whose id follows from the seed (stable across restarts)."""
    tenant_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"pbx-entra-emulator/tenant/{seed}"))
    with state.lock:
        existing = state.tenant(tenant_id)
        if existing is not None:
            return existing
        return mutations.create_tenant(
            state,
            display_name="Contoso",
            domain="contoso.onmicrosoft.com",
            tenant_id=tenant_id,
            users=users,
            groups=groups,
            seed=seed,
        )


def control_routes() -> list[Route]:
    t = "/tenants/{tid}"
    u = t + "/users/{uid}"
    return [
        Route("/health", health, methods=["GET"]),
        Route("/tenants", create_tenant, methods=["POST"]),
        Route("/tenants", list_tenants, methods=["GET"]),
        Route(t, get_tenant, methods=["GET"]),
        Route(t, delete_tenant, methods=["DELETE"]),
        Route(t + "/settings", put_settings, methods=["PUT", "PATCH"]),
        Route(t + "/settings", get_settings, methods=["GET"]),
        Route(t + "/expire-delta-tokens", expire_delta_tokens, methods=["POST"]),
        Route(t + "/rotate-keys", rotate_keys, methods=["POST"]),
        Route(t + "/changes", list_changes, methods=["GET"]),
        Route(t + "/id-token-tampering", add_id_token_tamper, methods=["POST"]),
        Route(t + "/id-token-tampering", list_id_token_tampering, methods=["GET"]),
        Route(t + "/id-token-tampering", clear_id_token_tampering, methods=["DELETE"]),
        Route(t + "/tokens", mint_token, methods=["POST"]),
        Route(t + "/apps", create_app, methods=["POST"]),
        Route(t + "/apps", list_apps, methods=["GET"]),
        Route(t + "/apps/{app_id}", get_app, methods=["GET"]),
        Route(t + "/apps/{app_id}", patch_app, methods=["PATCH"]),
        Route(t + "/apps/{app_id}", delete_app, methods=["DELETE"]),
        Route(t + "/apps/{app_id}/revoke-consent", revoke_consent, methods=["POST"]),
        Route(t + "/apps/{app_id}/secrets", add_secret, methods=["POST"]),
        Route(t + "/apps/{app_id}/secrets/{key_id}/expire", expire_secret, methods=["POST"]),
        Route(t + "/apps/{app_id}/secrets/{key_id}", delete_secret, methods=["DELETE"]),
        Route(t + "/users", list_users, methods=["GET"]),
        Route(t + "/users", create_user, methods=["POST"]),
        Route(u, get_user, methods=["GET"]),
        Route(u, patch_user, methods=["PATCH"]),
        Route(u, delete_user, methods=["DELETE"]),
        Route(u + "/disable", _user_action(mutations.disable_user), methods=["POST"]),
        Route(u + "/enable", _user_action(mutations.enable_user), methods=["POST"]),
        Route(u + "/soft-delete", _user_action(mutations.soft_delete_user), methods=["POST"]),
        Route(u + "/restore", _user_action(mutations.restore_user), methods=["POST"]),
        Route(u + "/revoke-sessions", _user_action(mutations.revoke_sessions), methods=["POST"]),
        Route(u + "/mailbox-members", add_mailbox_member, methods=["POST"]),
        Route(u + "/mailbox-members/{member_id}", remove_mailbox_member, methods=["DELETE"]),
        Route(u + "/presence", put_presence, methods=["PUT"]),
        Route(u + "/contact-folders", list_folders, methods=["GET"]),
        Route(u + "/contact-folders", create_folder, methods=["POST"]),
        Route(u + "/contacts", create_default_contact, methods=["POST"]),
        Route(t + "/contact-folders/{fid}", delete_folder, methods=["DELETE"]),
        Route(t + "/contact-folders/{fid}/share", share_folder, methods=["POST"]),
        Route(t + "/contact-folders/{fid}/contacts", list_contacts, methods=["GET"]),
        Route(t + "/contact-folders/{fid}/contacts", create_contact, methods=["POST"]),
        Route(t + "/contacts/{cid}", patch_contact, methods=["PATCH"]),
        Route(t + "/contacts/{cid}", delete_contact, methods=["DELETE"]),
        Route(t + "/contacts/{cid}/move", move_contact, methods=["POST"]),
        Route(t + "/contacts-load", load_contacts, methods=["POST"]),
        Route(t + "/groups", list_groups, methods=["GET"]),
        Route(t + "/groups", create_group, methods=["POST"]),
        Route(t + "/groups/{gid}", get_group, methods=["GET"]),
        Route(t + "/groups/{gid}", patch_group, methods=["PATCH"]),
        Route(t + "/groups/{gid}", delete_group, methods=["DELETE"]),
        Route(t + "/groups/{gid}/restore", restore_group, methods=["POST"]),
        Route(t + "/groups/{gid}/members", add_members, methods=["POST"]),
        Route(t + "/groups/{gid}/members/{member_id}", remove_member, methods=["DELETE"]),
        Route(t + "/graph-settings", put_graph_settings, methods=["PUT", "PATCH"]),
        Route("/subscriptions", list_graph_subscriptions, methods=["GET"]),
        Route("/subscriptions/{sid}/lifecycle", subscription_lifecycle, methods=["POST"]),
        Route("/subscriptions/{sid}/expire", expire_graph_subscription, methods=["POST"]),
        Route("/notifications/settings", put_notification_settings, methods=["PUT", "PATCH"]),
        Route("/notifications/deliveries", list_deliveries, methods=["GET"]),
        Route("/faults", add_fault, methods=["POST"]),
        Route("/faults", list_faults, methods=["GET"]),
        Route("/faults", clear_faults, methods=["DELETE"]),
        Route("/faults/{fault_id}", delete_fault, methods=["DELETE"]),
        Route("/presence/reads", list_presence_reads, methods=["GET"]),
        Route("/presence/reads", clear_presence_reads, methods=["DELETE"]),
        Route("/requests", list_requests, methods=["GET"]),
        Route("/requests", clear_requests, methods=["DELETE"]),
    ]
