"""Directory routes: organization, users, groups, memberships, deleted items, mailbox settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from emulator.graph import settings as graph_settings
from emulator.graph.access import require_mailbox_permission, require_permission
from emulator.graph.http import (
    GraphError,
    GraphRequest,
    GraphResponse,
    access_denied,
    bad_request,
    not_found,
    router,
)
from emulator.graph.model import (
    GROUP,
    GROUP_TYPE,
    USER,
    USER_TYPE,
    direct_member_of,
    live_group,
    live_user,
    ordered_ids,
    result_cache,
    sorted_ids,
    transitive_member_of,
    transitive_members,
)
from emulator.graph.odata import (
    Resource,
    advanced,
    compile_filter,
    needs_advanced,
    parse_orderby,
    parse_search,
    parse_select,
    parse_top,
    project,
    query_fingerprint,
    reject_expand,
    reject_skip,
    require_count_segment,
    select_suffix,
    wants_count,
)
from emulator.graph.paging import collection, page_list, page_sorted
from emulator.state import Group, Tenant, User
from emulator.tokens import Caller

# Permissions tables of the API pages (delegated, application):
# user-list.md / user-get.md / user-delta.md
USERS_READ = (("User.ReadBasic.All", "User.Read.All"), ("User.Read.All",))
# group-list.md / group-get.md / group-list-members.md / group-list-transitivemembers.md
GROUPS_READ = (("GroupMember.Read.All",), ("GroupMember.Read.All",))
# user-list-memberof.md
MEMBER_OF_READ = (("GroupMember.Read.All",), ("GroupMember.Read.All",))
# organization-list.md
ORGANIZATION_READ = (("User.Read", "Organization.Read.All"), ("Organization.Read.All",))
# directory-deleteditems-list.md (users: User.Read.All; groups: Group.Read.All)
DELETED_USERS_READ = (("User.Read.All",), ("User.Read.All",))
DELETED_GROUPS_READ = (("Group.Read.All",), ("Group.Read.All",))


# --- organization ----------------------------------------------------------------------------


@router.route("GET", "/organization")
async def list_organization(request: GraphRequest) -> GraphResponse:
    """https://learn.microsoft.com/en-us/graph/api/organization-list"""
    caller = request.caller()
    require_permission(caller, *ORGANIZATION_READ)
    tenant = caller.tenant
    org = {
        "id": tenant.id,
        "displayName": tenant.display_name,
        "tenantType": "AAD",
        "verifiedDomains": [
            {
                "capabilities": "Email, OfficeCommunicationsOnline",
                "isDefault": True,
                "isInitial": True,
                "name": tenant.domain,
                "type": "Managed",
            }
        ],
    }
    return GraphResponse(200, {"@odata.context": request.context("organization"), "value": [org]})


@router.route("GET", "/organization/{id}")
async def get_organization(request: GraphRequest) -> GraphResponse:
    result = await list_organization(request)
    org = result.body["value"][0]
    if request.params["id"] != org["id"]:
        raise not_found(request.params["id"])
    return GraphResponse(200, {"@odata.context": request.context("organization/$entity"), **org})


# --- collections -----------------------------------------------------------------------------


def _list_directory(
    request: GraphRequest,
    *,
    kind: str,
    resource: Resource,
    objects: dict[str, Any],
    context: str,
) -> GraphResponse:
    """`/users` and `/groups`: $select, $filter, $search, $orderby, $count, $top and paging."""
    reject_skip(request)
    reject_expand(request)
    tenant = request.tenant
    select = parse_select(request, resource, collection=True)
    render = resource.projector(select or resource.default_select)
    top = parse_top(request)
    raw_filter = request.query.get("$filter")
    compiled = compile_filter(raw_filter, resource) if raw_filter else None
    search = parse_search(request, resource)
    orderby = parse_orderby(request, resource)
    is_advanced = advanced(request)
    if compiled is not None and compiled.needs_advanced and not is_advanced:
        raise needs_advanced(compiled.needs_advanced)
    if compiled is not None and orderby is not None and not is_advanced:
        # aad-advanced-queries.md: "Using $filter and $orderby together is supported only with
        # advanced queries."
        raise GraphError(
            400, "Request_UnsupportedQuery", "Sorting not supported for current query."
        )
    count = wants_count(request)
    fingerprint = query_fingerprint(request, "$filter", "$search", "$orderby")
    predicate = compiled.predicate if compiled is not None else None

    def visible(obj: Any) -> bool:
        if obj.deleted_at is not None:
            return False
        if predicate is not None and not predicate(obj):
            return False
        return search is None or search(obj)

    with request.state.lock:
        if orderby is not None or search is not None:
            stamp = (len(objects), tenant.seq)

            def build() -> list[str]:
                if orderby is not None:
                    ids = ordered_ids(tenant, kind, resource, orderby[0], orderby[1])
                else:
                    ids = sorted_ids(tenant, kind)
                return [i for i in ids if visible(objects[i])]

            matching = result_cache(tenant).get((kind, fingerprint, stamp), build)
            page = page_list(
                request, kind=kind, fingerprint=fingerprint, objects=matching, top=top, count=count
            )
            values = [render(objects[i]) for i in page.items if i in objects]
        else:
            if compiled is not None and compiled.ids is not None:
                ids = sorted({i for i in compiled.ids if i in objects})
            else:
                ids = sorted_ids(tenant, kind)

            def resolve(object_id: str) -> Any | None:
                obj = objects.get(object_id)
                return obj if obj is not None and visible(obj) else None

            page = page_sorted(
                request,
                kind=kind,
                fingerprint=fingerprint,
                ids=ids,
                resolve=resolve,
                top=top,
                count=count,
            )
            values = [render(obj) for obj in page.items]
    return collection(request, context + select_suffix(select), page, values)


def _count_directory(
    request: GraphRequest, resource: Resource, objects: dict[str, Any]
) -> GraphResponse:
    """`/users/$count`: text/plain, only as an advanced query (aad-advanced-queries.md)."""
    require_count_segment(request)
    raw_filter = request.query.get("$filter")
    compiled = compile_filter(raw_filter, resource) if raw_filter else None
    search = parse_search(request, resource)
    with request.state.lock:
        total = sum(
            1
            for obj in list(objects.values())
            if obj.deleted_at is None
            and (compiled is None or compiled.predicate(obj))
            and (search is None or search(obj))
        )
    return GraphResponse(200, str(total), media_type="text/plain")


@router.route("GET", "/users")
async def list_users(request: GraphRequest) -> GraphResponse:
    """https://learn.microsoft.com/en-us/graph/api/user-list"""
    caller = request.caller()
    require_permission(caller, *USERS_READ)
    return _list_directory(
        request, kind="users", resource=USER, objects=caller.tenant.users, context="users"
    )


@router.route("GET", "/users/$count")
async def count_users(request: GraphRequest) -> GraphResponse:
    caller = request.caller()
    require_permission(caller, *USERS_READ)
    return _count_directory(request, USER, caller.tenant.users)


@router.route("GET", "/groups")
async def list_groups(request: GraphRequest) -> GraphResponse:
    """https://learn.microsoft.com/en-us/graph/api/group-list"""
    caller = request.caller()
    require_permission(caller, *GROUPS_READ)
    return _list_directory(
        request, kind="groups", resource=GROUP, objects=caller.tenant.groups, context="groups"
    )


@router.route("GET", "/groups/$count")
async def count_groups(request: GraphRequest) -> GraphResponse:
    caller = request.caller()
    require_permission(caller, *GROUPS_READ)
    return _count_directory(request, GROUP, caller.tenant.groups)


# --- single objects --------------------------------------------------------------------------


def _user_param(request: GraphRequest) -> User:
    """`/users/{id | userPrincipalName}`; soft- or hard-deleted users are 404 (user-get.md)."""
    key = request.params["id"]
    if key.lower() == "me":
        return request.me()
    user = live_user(request.tenant, key)
    if user is None:
        raise not_found(key)
    return user


@router.route("GET", "/users/{id}", "/me")
async def get_user(request: GraphRequest) -> GraphResponse:
    """https://learn.microsoft.com/en-us/graph/api/user-get"""
    caller = request.caller()
    request.params.setdefault("id", "me")
    user = _user_param(request)
    own = caller.user is not None and caller.user.id == user.id
    if own:
        require_permission(caller, ("User.Read", "User.ReadBasic.All", "User.Read.All"), ())
    else:
        require_permission(caller, *USERS_READ)
    select = parse_select(request, USER, collection=False)
    names = select or list(USER.default_select)
    body: dict[str, Any] = {
        "@odata.context": request.context(f"users{select_suffix(select)}/$entity")
    }
    for name in names:
        if name == "mailboxSettings":
            body[name] = _mailbox_settings(request, caller, user)
        elif name in USER.getters:
            body[name] = USER.getters[name](user)
        else:
            body[name] = None  # single-entity-only properties the emulator doesn't model
    return GraphResponse(200, body)


@router.route("GET", "/groups/{id}")
async def get_group(request: GraphRequest) -> GraphResponse:
    """https://learn.microsoft.com/en-us/graph/api/group-get"""
    caller = request.caller()
    require_permission(caller, *GROUPS_READ)
    group = live_group(caller.tenant, request.params["id"])
    if group is None:
        raise not_found(request.params["id"])
    select = parse_select(request, GROUP, collection=False)
    body = {"@odata.context": request.context(f"groups{select_suffix(select)}/$entity")}
    body.update(project(group, GROUP.fields(select or GROUP.default_select)))
    return GraphResponse(200, body)


# --- memberships -----------------------------------------------------------------------------


def _directory_select(request: GraphRequest) -> list[str] | None:
    """$select over a directoryObject collection: a property of users or of groups."""
    raw = request.query.get("$select")
    if raw is None or not raw.strip():
        return None
    names: list[str] = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        name = USER.canonical(part) or GROUP.canonical(part)
        if name is None:
            raise bad_request(
                f"Could not find a property named '{part}' on type "
                "'microsoft.graph.directoryObject'."
            )
        if name in USER.single_only:
            raise GraphError(501, "NotImplemented", "This operation target is not yet supported.")
        names.append(name)
    return names


def _directory_object(
    tenant: Tenant, object_id: str, select: list[str] | None
) -> dict[str, Any] | None:
    user = tenant.users.get(object_id)
    if user is not None:
        if user.deleted_at is not None:
            return None
        body: dict[str, Any] = {"@odata.type": USER_TYPE}
        body.update(project(user, USER.fields(select or USER.default_select)))
        return body
    group = tenant.groups.get(object_id)
    if group is not None and group.deleted_at is None:
        body = {"@odata.type": GROUP_TYPE}
        body.update(project(group, GROUP.fields(select or GROUP.default_select)))
        return body
    return None


def _page_objects(
    request: GraphRequest,
    *,
    kind: str,
    ids: list[str],
    cast: str | None,
    context: str,
) -> GraphResponse:
    reject_skip(request)
    if request.query.get("$filter") or request.query.get("$search"):
        if not advanced(request):
            raise needs_advanced("filter")
        raise GraphError(
            400, "Request_UnsupportedQuery", "The emulator supports no $filter on relationships."
        )
    tenant = request.tenant
    select = _directory_select(request)
    top = parse_top(request)
    count = wants_count(request)
    fingerprint = query_fingerprint(request, "$select")

    def resolve(object_id: str) -> dict[str, Any] | None:
        if cast == "user" and object_id not in tenant.users:
            return None
        if cast == "group" and object_id not in tenant.groups:
            return None
        return _directory_object(tenant, object_id, select)

    with request.state.lock:
        page = page_sorted(
            request,
            kind=kind,
            fingerprint=fingerprint,
            ids=ids,
            resolve=resolve,
            top=top,
            count=count,
        )
    suffix = f"/microsoft.graph.{cast}" if cast else ""
    return collection(request, context + suffix + select_suffix(select), page, page.items)


def _group_param(request: GraphRequest) -> Group:
    group = live_group(request.tenant, request.params["id"])
    if group is None:
        raise not_found(request.params["id"])
    return group


def _cast(request: GraphRequest) -> str | None:
    cast = request.params.get("cast")
    if cast is None:
        return None
    name = cast.lower().removeprefix("microsoft.graph.")
    if name not in ("user", "group"):
        raise bad_request(f"Resource not found for the segment '{cast}'.", "BadRequest")
    return name


@router.route("GET", "/groups/{id}/members", "/groups/{id}/members/{cast}")
async def list_members(request: GraphRequest) -> GraphResponse:
    """https://learn.microsoft.com/en-us/graph/api/group-list-members"""
    caller = request.caller()
    require_permission(caller, *GROUPS_READ)
    group = _group_param(request)
    return _page_objects(
        request,
        kind=f"members:{group.id}",
        ids=sorted(group.member_ids),
        cast=_cast(request),
        context="directoryObjects",
    )


@router.route("GET", "/groups/{id}/transitiveMembers", "/groups/{id}/transitiveMembers/{cast}")
async def list_transitive_members(request: GraphRequest) -> GraphResponse:
    """https://learn.microsoft.com/en-us/graph/api/group-list-transitivemembers"""
    caller = request.caller()
    require_permission(caller, *GROUPS_READ)
    group = _group_param(request)
    return _page_objects(
        request,
        kind=f"transitiveMembers:{group.id}",
        ids=transitive_members(caller.tenant, group),
        cast=_cast(request),
        context="directoryObjects",
    )


def _member_of(request: GraphRequest, transitive: bool) -> GraphResponse:
    caller = request.caller()
    request.params.setdefault("id", "me")
    user = _user_param(request)
    own = caller.user is not None and caller.user.id == user.id
    if own:
        require_permission(caller, ("User.Read", "GroupMember.Read.All"), ())
    else:
        require_permission(caller, *MEMBER_OF_READ)
    tenant = caller.tenant
    ids = transitive_member_of(tenant, user.id) if transitive else direct_member_of(tenant, user.id)
    name = "transitiveMemberOf" if transitive else "memberOf"
    return _page_objects(
        request, kind=f"{name}:{user.id}", ids=ids, cast=_cast(request), context="directoryObjects"
    )


@router.route(
    "GET",
    "/users/{id}/memberOf",
    "/users/{id}/memberOf/{cast}",
    "/me/memberOf",
    "/me/memberOf/{cast}",
)
async def list_member_of(request: GraphRequest) -> GraphResponse:
    """https://learn.microsoft.com/en-us/graph/api/user-list-memberof"""
    return _member_of(request, transitive=False)


@router.route(
    "GET",
    "/users/{id}/transitiveMemberOf",
    "/users/{id}/transitiveMemberOf/{cast}",
    "/me/transitiveMemberOf",
    "/me/transitiveMemberOf/{cast}",
)
async def list_transitive_member_of(request: GraphRequest) -> GraphResponse:
    """https://learn.microsoft.com/en-us/graph/api/user-list-transitivememberof"""
    return _member_of(request, transitive=True)


# --- deleted items ---------------------------------------------------------------------------


def _deleted(request: GraphRequest, kind: str) -> GraphResponse:
    caller = request.caller()
    resource = USER if kind == "user" else GROUP
    require_permission(caller, *(DELETED_USERS_READ if kind == "user" else DELETED_GROUPS_READ))
    reject_skip(request)
    tenant = caller.tenant
    objects: dict[str, Any] = tenant.users if kind == "user" else tenant.groups
    select = parse_select(request, resource, collection=True)
    fields = resource.fields(select or (*resource.default_select, "deletedDateTime"))
    top = parse_top(request)
    with request.state.lock:
        ids = sorted(i for i, o in list(objects.items()) if o.deleted_at is not None)
        page = page_sorted(
            request,
            kind=f"deleted:{kind}",
            fingerprint=query_fingerprint(request, "$select"),
            ids=ids,
            resolve=lambda i: objects.get(i),
            top=top,
            count=wants_count(request),
        )
        values = [project(o, fields) for o in page.items]
    context = f"directory/deletedItems/microsoft.graph.{kind}{select_suffix(select)}"
    return collection(request, context, page, values)


@router.route("GET", "/directory/deletedItems/microsoft.graph.user")
async def list_deleted_users(request: GraphRequest) -> GraphResponse:
    """https://learn.microsoft.com/en-us/graph/api/directory-deleteditems-list: soft-deleted
    users, restorable for 30 days, with deletedDateTime."""
    return _deleted(request, "user")


@router.route("GET", "/directory/deletedItems/microsoft.graph.group")
async def list_deleted_groups(request: GraphRequest) -> GraphResponse:
    return _deleted(request, "group")


@router.route("GET", "/directory/deletedItems/{id}")
async def get_deleted_item(request: GraphRequest) -> GraphResponse:
    """https://learn.microsoft.com/en-us/graph/api/directory-deleteditems-get"""
    caller = request.caller()
    tenant = caller.tenant
    object_id = request.params["id"]
    user = tenant.users.get(object_id)
    if user is not None and user.deleted_at is not None:
        require_permission(caller, *DELETED_USERS_READ)
        body = {
            "@odata.context": request.context("directoryObjects/$entity"),
            "@odata.type": USER_TYPE,
        }
        body.update(project(user, USER.fields((*USER.default_select, "deletedDateTime"))))
        return GraphResponse(200, body)
    group = tenant.groups.get(object_id)
    if group is not None and group.deleted_at is not None:
        require_permission(caller, *DELETED_GROUPS_READ)
        body = {
            "@odata.context": request.context("directoryObjects/$entity"),
            "@odata.type": GROUP_TYPE,
        }
        body.update(project(group, GROUP.fields(GROUP.default_select)))
        return GraphResponse(200, body)
    raise not_found(object_id)


# --- mailbox settings ------------------------------------------------------------------------

MAILBOX_SETTINGS: dict[str, Callable[[User], Any]] = {
    "userPurpose": lambda u: u.user_purpose,
    "timeZone": lambda u: "UTC",
    "dateFormat": lambda u: "yyyy-MM-dd",
    "timeFormat": lambda u: "HH:mm",
    "language": lambda u: {"locale": "en-US", "displayName": "English (United States)"},
    "delegateMeetingMessageDeliveryOptions": lambda u: "sendToDelegateOnly",
}


def can_open_mailbox(caller: Caller, owner: User) -> bool:
    """Whether a delegated caller may open `owner`'s mailbox: its own, or one it has full access
    to (a member of the shared mailbox)."""
    if caller.user is None:
        return True
    return caller.user.id == owner.id or caller.user.id in owner.mailbox_members


def _mailbox_settings(request: GraphRequest, caller: Caller, user: User) -> dict[str, Any]:
    """https://learn.microsoft.com/en-us/graph/api/user-get-mailboxsettings: MailboxSettings.Read
    (delegated or application). The delegated permission reads "the signed-in user's mailbox
    settings" (permissions reference); the emulator also lets a delegate with full access to a
    shared mailbox read it, and answers 403 ErrorAccessDenied for any other mailbox, as Exchange
    does."""
    require_mailbox_permission(caller, ("MailboxSettings.Read",), ("MailboxSettings.Read",))
    if not can_open_mailbox(caller, user):
        raise access_denied()
    if (
        caller.user is not None
        and caller.user.id != user.id
        and not graph_settings.mailbox_settings_for_members(request.tenant)
    ):
        raise access_denied()
    if not user.mail:
        raise GraphError(
            404,
            "MailboxNotEnabledForRESTAPI",
            "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
        )
    return {name: getter(user) for name, getter in MAILBOX_SETTINGS.items()}


@router.route("GET", "/users/{id}/mailboxSettings", "/me/mailboxSettings")
async def get_mailbox_settings(request: GraphRequest) -> GraphResponse:
    caller = request.caller()
    request.params.setdefault("id", "me")
    user = _user_param(request)
    settings = _mailbox_settings(request, caller, user)
    context = request.context(f"users('{user.id}')/mailboxSettings")
    return GraphResponse(200, {"@odata.context": context, **settings})


@router.route("GET", "/users/{id}/mailboxSettings/{setting}", "/me/mailboxSettings/{setting}")
async def get_mailbox_setting(request: GraphRequest) -> GraphResponse:
    """`/users/{id}/mailboxSettings/userPurpose` → `{"value": "shared"}` (a primitive property)."""
    caller = request.caller()
    request.params.setdefault("id", "me")
    user = _user_param(request)
    wanted = request.params["setting"]
    name = next((n for n in MAILBOX_SETTINGS if n.lower() == wanted.lower()), None)
    if name is None:
        raise bad_request(f"Resource not found for the segment '{wanted}'.", "BadRequest")
    settings = _mailbox_settings(request, caller, user)
    value = settings[name]
    context = request.context(f"users('{user.id}')/mailboxSettings/{name}")
    if isinstance(value, dict):
        return GraphResponse(200, {"@odata.context": context, **value})
    return GraphResponse(200, {"@odata.context": context, "value": value})
