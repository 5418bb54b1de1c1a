"""Outlook contacts: `/users/{id}/contacts`, `/contactFolders`, `/contactFolders/{id}/contacts`.

Access (https://learn.microsoft.com/en-us/graph/outlook-get-shared-contacts-folders): an app-only
token with Contacts.Read reads every mailbox; a delegated token reads the signed-in user's own
contacts with Contacts.Read, and another user's folder only with Contacts.Read.Shared and only when
that folder is shared with the signed-in user or the signed-in user has full access to the mailbox
(a member of the shared mailbox). Anything else is 403 ErrorAccessDenied, "Access is denied. Check
credentials and try again.", as Exchange answers.

Paging follows the Outlook APIs (https://learn.microsoft.com/en-us/graph/paging: "the
@odata.nextLink URL value will contain either a $skiptoken or a $skip query parameter"): pages of
10 by default and next links with `$skip` (user-list-contacts.md).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from emulator.graph import settings as graph_settings
from emulator.graph.access import has_any
from emulator.graph.http import (
    GraphError,
    GraphRequest,
    GraphResponse,
    access_denied,
    bad_request,
    encode_pairs,
    router,
)
from emulator.graph.model import CONTACT, FOLDER, FolderView, etag
from emulator.graph.odata import compile_filter, parse_orderby, parse_select, project, seal, unseal
from emulator.state import ContactFolder, Tenant, User
from emulator.tokens import Caller

OUTLOOK_PAGE = 10
OUTLOOK_MAX_PAGE = 1000


def _item_not_found() -> GraphError:
    return GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")


def _owner(request: GraphRequest) -> User:
    key = request.params.get("id", "me")
    if key.lower() == "me":
        return request.me()
    tenant = request.tenant
    user = tenant.users.get(key) or (tenant.find_user(key) if "@" in key else None)
    if user is None or user.deleted_at is not None:
        raise GraphError(404, "ErrorInvalidUser", f"The requested user '{key}' is invalid.")
    if not user.mail:
        raise GraphError(
            404,
            "MailboxNotEnabledForRESTAPI",
            "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
        )
    return user


def _is_delegate(caller: Caller, owner: User) -> bool:
    return caller.user is not None and caller.user.id in owner.mailbox_members


def check_contacts_access(caller: Caller, owner: User, folder: ContactFolder | None) -> None:
    """The delegated-access rule of the module docstring; raises 403 ErrorAccessDenied."""
    if caller.is_app_only:
        if not has_any(caller, "Contacts.Read"):
            raise access_denied()
        return
    assert caller.user is not None
    if caller.user.id == owner.id:
        if not has_any(caller, "Contacts.Read"):
            raise access_denied()
        return
    if not has_any(caller, "Contacts.Read.Shared"):
        raise access_denied()
    if _is_delegate(caller, owner):
        return
    if folder is not None and caller.user.id in folder.shared_with:
        return
    raise access_denied()


def _default_folder(tenant: Tenant, owner: User) -> ContactFolder | None:
    return next(
        (f for f in tenant.contact_folders.values() if f.owner_id == owner.id and f.is_default),
        None,
    )


def _folder(request: GraphRequest, owner: User) -> ContactFolder:
    """A folder by id, or the well-known name `contacts` for the mailbox's default folder."""
    key = request.params["folder"]
    if key.lower() == "contacts":
        default = _default_folder(request.tenant, owner)
        if default is None:
            raise _item_not_found()
        return default
    folder = request.tenant.contact_folders.get(key)
    if folder is None or folder.owner_id != owner.id:
        raise _item_not_found()
    return folder


def _outlook_top(request: GraphRequest) -> int:
    raw = request.query.get("$top")
    if raw is None or raw == "":
        return OUTLOOK_PAGE
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"Invalid value '{raw}' for $top.", "ErrorInvalidUrlQuery") from None
    if value < 1:
        raise bad_request(f"Invalid value '{raw}' for $top.", "ErrorInvalidUrlQuery")
    return min(value, OUTLOOK_MAX_PAGE)


def _outlook_skip(request: GraphRequest) -> int:
    raw = request.query.get("$skip")
    if raw is None or raw == "":
        return 0
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise bad_request(f"Invalid value '{raw}' for $skip.", "ErrorInvalidUrlQuery")
    return value


def _page_outlook(
    request: GraphRequest, items: list[Any], context: str, render: Any
) -> GraphResponse:
    top = _outlook_top(request)
    skip = _outlook_skip(request)
    chunk = items[skip : skip + top]
    body: dict[str, Any] = {"@odata.context": request.context(context)}
    if skip + top < len(items):
        pairs = [
            (k, v)
            for k, v in parse_qsl(request.raw_query, keep_blank_values=True)
            if k.lower() != "$skip"
        ]
        pairs.append(("$skip", str(skip + top)))
        body["@odata.nextLink"] = f"{request.url(request.path)}?{encode_pairs(pairs)}"
    body["value"] = [render(item) for item in chunk]
    return GraphResponse(200, body)


def _contact_fields(request: GraphRequest) -> tuple[list[str] | None, list[tuple[str, Any]]]:
    select = parse_select(request, CONTACT, collection=True)
    names = list(select or CONTACT.default_select)
    if "id" not in names:
        names.insert(0, "id")  # Outlook items always carry their id
    return select, CONTACT.fields(names)


def _render_contact(fields: list[tuple[str, Any]]) -> Any:
    def render(pair: tuple[ContactFolder, Any]) -> dict[str, Any]:
        body = {"@odata.etag": f'W/"{etag(pair[1])}"'}
        body.update(project(pair, fields))
        return body

    return render


def _list_contacts(
    request: GraphRequest, owner: User, folder: ContactFolder | None
) -> GraphResponse:
    caller = request.caller()
    check_contacts_access(caller, owner, folder)
    select, fields = _contact_fields(request)
    pairs = [(folder, c) for c in list(folder.contacts.values())] if folder is not None else []
    raw_filter = request.query.get("$filter")
    if raw_filter:
        predicate = compile_filter(raw_filter, CONTACT).predicate
        pairs = [p for p in pairs if predicate(p)]
    orderby = parse_orderby(request, CONTACT)
    if orderby is not None:
        getter = CONTACT.getters[orderby[0]]
        pairs.sort(key=lambda p: (getter(p) or "").casefold(), reverse=orderby[1])
    suffix = f"({','.join(select)})" if select else ""
    if folder is None or folder.is_default:
        context = f"users('{owner.id}')/contacts{suffix}"
    else:
        context = f"users('{owner.id}')/contactFolders('{folder.id}')/contacts{suffix}"
    return _page_outlook(request, pairs, context, _render_contact(fields))


@router.route("GET", "/users/{id}/contacts", "/me/contacts")
async def list_contacts(request: GraphRequest) -> GraphResponse:
    """https://learn.microsoft.com/en-us/graph/api/user-list-contacts: the default folder."""
    owner = _owner(request)
    return _list_contacts(request, owner, _default_folder(request.tenant, owner))


@router.route(
    "GET", "/users/{id}/contactFolders/{folder}/contacts", "/me/contactFolders/{folder}/contacts"
)
async def list_folder_contacts(request: GraphRequest) -> GraphResponse:
    """https://learn.microsoft.com/en-us/graph/api/contactfolder-list-contacts"""
    owner = _owner(request)
    folder = _folder(request, owner)
    return _list_contacts(request, owner, folder)


def _get_contact(request: GraphRequest, owner: User, folder: ContactFolder | None) -> GraphResponse:
    caller = request.caller()
    check_contacts_access(caller, owner, folder)
    contact = folder.contacts.get(request.params["contact"]) if folder is not None else None
    if contact is None or folder is None:
        raise _item_not_found()
    _, fields = _contact_fields(request)
    body = {"@odata.context": request.context(f"users('{owner.id}')/contacts/$entity")}
    body.update(_render_contact(fields)((folder, contact)))
    return GraphResponse(200, body)


@router.route("GET", "/users/{id}/contacts/{contact}", "/me/contacts/{contact}")
async def get_contact(request: GraphRequest) -> GraphResponse:
    """https://learn.microsoft.com/en-us/graph/api/contact-get"""
    owner = _owner(request)
    tenant = request.tenant
    contact_id = request.params["contact"]
    folder = next(
        (
            f
            for f in tenant.contact_folders.values()
            if f.owner_id == owner.id and contact_id in f.contacts
        ),
        _default_folder(tenant, owner),
    )
    return _get_contact(request, owner, folder)


@router.route(
    "GET",
    "/users/{id}/contactFolders/{folder}/contacts/{contact}",
    "/me/contactFolders/{folder}/contacts/{contact}",
)
async def get_folder_contact(request: GraphRequest) -> GraphResponse:
    owner = _owner(request)
    return _get_contact(request, owner, _folder(request, owner))


def _folder_view(tenant: Tenant, owner: User, folder: ContactFolder) -> FolderView:
    default = _default_folder(tenant, owner)
    parent = default.id if default is not None and default.id != folder.id else None
    return FolderView(folder, parent)


@router.route("GET", "/users/{id}/contactFolders", "/me/contactFolders")
async def list_contact_folders(request: GraphRequest) -> GraphResponse:
    """https://learn.microsoft.com/en-us/graph/api/user-list-contactfolders: the folders in the
    default Contacts folder. Someone else's mailbox lists the folders shared with the caller
    (all of them for a delegate with full access); none shared is 403 ErrorAccessDenied."""
    caller = request.caller()
    owner = _owner(request)
    tenant = request.tenant
    folders = [
        f
        for f in list(tenant.contact_folders.values())
        if f.owner_id == owner.id and not f.is_default
    ]
    if caller.user is not None and caller.user.id != owner.id and not _is_delegate(caller, owner):
        if not has_any(caller, "Contacts.Read.Shared"):
            raise access_denied()
        folders = [f for f in folders if caller.user.id in f.shared_with]
        if not folders:
            raise access_denied()
    else:
        check_contacts_access(caller, owner, None)
    select = parse_select(request, FOLDER, collection=True)
    names = list(select or FOLDER.default_select)
    if "id" not in names:
        names.insert(0, "id")
    fields = FOLDER.fields(names)
    views = [_folder_view(tenant, owner, f) for f in folders]
    context = f"users('{owner.id}')/contactFolders"
    return _page_outlook(request, views, context, lambda v: project(v, fields))


@router.route("GET", "/users/{id}/contactFolders/{folder}", "/me/contactFolders/{folder}")
async def get_contact_folder(request: GraphRequest) -> GraphResponse:
    """https://learn.microsoft.com/en-us/graph/api/contactfolder-get"""
    caller = request.caller()
    owner = _owner(request)
    folder = _folder(request, owner)
    check_contacts_access(caller, owner, folder)
    view = _folder_view(request.tenant, owner, folder)
    body = {"@odata.context": request.context(f"users('{owner.id}')/contactFolders/$entity")}
    body.update(project(view, FOLDER.fields(FOLDER.default_select)))
    return GraphResponse(200, body)


# --- contacts delta (https://learn.microsoft.com/en-us/graph/api/contact-delta) ---------------


@router.route(
    "GET",
    "/users/{id}/contactFolders/{folder}/contacts/delta",
    "/me/contactFolders/{folder}/contacts/delta",
)
async def contacts_delta(request: GraphRequest) -> GraphResponse:
    """Contacts of one folder: the first round lists them, later rounds return created and
    updated contacts in full and deleted ones as `{"id", "@removed": {"reason": "deleted"}}`."""
    caller = request.caller()
    owner = _owner(request)
    folder = _folder(request, owner)
    check_contacts_access(caller, owner, folder)
    tenant = request.tenant
    if (
        caller.user is not None
        and caller.user.id != owner.id
        and not graph_settings.shared_contacts_delta(tenant)
    ):
        # Contacts.Read.Shared is documented for plain reads only (settings.py).
        raise access_denied()
    _, fields = _contact_fields(request)
    render = _render_contact(fields)
    path = request.path
    token_raw = request.query.get("$deltatoken") or request.query.get("$skiptoken")
    if token_raw:
        token = unseal(request.state, token_raw)
        if token is None or token.get("folder") != folder.id:
            raise GraphError(
                410, "SyncStateNotFound", "The sync state is not valid; synchronize again."
            )
        if token.get("s", 0) < tenant.min_valid_delta_seq:
            raise GraphError(
                410, "SyncStateNotFound", "The sync state is not valid; synchronize again."
            )
        first = int(token["s"])
        last = tenant.seq
        latest: dict[str, str] = {}
        for event in tenant.changes:
            if event.seq <= first or event.seq > last or event.kind != "contact":
                continue
            if event.folder_id == folder.id:
                latest.pop(event.object_id, None)
                latest[event.object_id] = event.change_type
        values: list[dict[str, Any]] = []
        for contact_id in latest:
            contact = folder.contacts.get(contact_id)
            if contact is None:
                values.append({"id": contact_id, "@removed": {"reason": "deleted"}})
            else:
                values.append(render((folder, contact)))
        new_seq = last
    else:
        values = [render((folder, c)) for c in list(folder.contacts.values())]
        new_seq = tenant.seq
    link = request.url(
        path, {"$deltatoken": seal(request.state, {"folder": folder.id, "s": new_seq})}
    )
    context = "Collection(contact)"
    return GraphResponse(
        200, {"@odata.context": request.context(context), "@odata.deltaLink": link, "value": values}
    )
