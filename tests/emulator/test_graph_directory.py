"""Directory routes over HTTPS: /organization, /users, /groups, memberships, deleted items and
mailbox settings, with the OData options and errors of Graph's documentation."""

from __future__ import annotations

import base64

import pytest

from emulator import mutations
from emulator.graph.http import GraphError
from emulator.graph.model import GROUP, USER
from emulator.graph.odata import compile_filter
from emulator.testing import RunningEmulator
from tests.emulator.graph_support import World, make_world, page_all

DEFAULT_USER_PROPERTIES = {
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
}
EVENTUAL = {"ConsistencyLevel": "eventual"}


@pytest.fixture
def world(emulator: RunningEmulator) -> World:
    return make_world(emulator)


def error(response: object) -> dict[str, str]:
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"}
    assert {"code", "message", "innerError"} <= set(body["error"])
    return body["error"]  # type: ignore[no-any-return]


# --- /organization and /users ------------------------------------------------------------------


def test_organization_lists_the_tenant_with_its_verified_domain(world: World) -> None:
    response = world.get("/organization")
    assert response.status_code == 200
    body = response.json()
    assert body["@odata.context"].endswith("/v1.0/$metadata#organization")
    [org] = body["value"]
    assert org["id"] == world.tenant.id
    assert org["displayName"] == world.tenant.display_name
    assert [d["name"] for d in org["verifiedDomains"]] == [world.tenant.domain]


def test_list_users_returns_the_documented_default_properties(world: World) -> None:
    # user-list.md, example 1: GET /users without $select.
    world.user("adams", displayName="Conf Room Adams", businessPhones=[])
    response = world.get("/users")
    assert response.status_code == 200
    body = response.json()
    assert body["@odata.context"].endswith("/v1.0/$metadata#users")
    assert body["value"]
    for item in body["value"]:
        assert set(item) == DEFAULT_USER_PROPERTIES


def test_paging_rounds_return_every_user_once_and_keep_the_query(world: World) -> None:
    for i in range(230):
        world.user(f"pager{i:03d}")
    expected = {u.id for u in world.tenant.users.values() if u.deleted_at is None}
    with world.client(world.token()) as client:
        first = client.get("/users", params={"$top": "100", "$select": "id,displayName"}).json()
    assert len(first["value"]) == 100
    next_link = first["@odata.nextLink"]
    assert "$top=100" in next_link and "$select=id,displayName" in next_link
    assert "$skiptoken=" in next_link
    items = page_all(world, "/users?$top=100&$select=id,displayName")
    ids = [item["id"] for item in items]
    assert len(ids) == len(set(ids)) == len(expected)
    assert set(ids) == expected
    assert all(set(item) == {"id", "displayName"} for item in items)


def test_next_link_token_is_opaque_and_tampering_is_refused(world: World) -> None:
    for i in range(5):
        world.user(f"opaque{i}")
    body = world.get("/users?$top=2").json()
    token = body["@odata.nextLink"].split("$skiptoken=", 1)[1]
    # Opaque: not readable JSON, neither plain nor base64.
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert b'"a"' not in raw and b"users" not in raw
    altered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    response = world.get(f"/users?$top=2&$skiptoken={altered}")
    assert response.status_code == 400
    assert error(response)["code"] == "Directory_ExpiredPageToken"
    # A token belongs to the query it pages.
    response = world.get(f"/users?$top=2&$filter=userType eq 'Member'&$skiptoken={token}")
    assert response.status_code == 400
    assert error(response)["code"] == "Directory_ExpiredPageToken"


@pytest.mark.parametrize("top", ["1000", "0", "abc"])
def test_top_outside_1_to_999_is_refused(world: World, top: str) -> None:
    response = world.get(f"/users?$top={top}")
    assert response.status_code == 400
    assert error(response) | {"innerError": None} == {
        "code": "Request_UnsupportedQuery",
        "message": f"Invalid page size specified: '{top}'. Must be between 1 and 999 inclusive.",
        "innerError": None,
    }


def test_top_999_is_the_largest_page(world: World) -> None:
    assert world.get("/users?$top=999").status_code == 200


def test_select_returns_only_the_selected_properties(world: World) -> None:
    # user-list.md, example 2 selects displayName,id.
    world.user("jsmith", displayName="John Smith")
    response = world.get("/users?$select=displayName,id")
    body = response.json()
    assert body["@odata.context"].endswith("$metadata#users(displayName,id)")
    assert {"displayName": "John Smith"} in [
        {"displayName": v["displayName"]} for v in body["value"]
    ]
    assert all(set(v) == {"displayName", "id"} for v in body["value"])


def test_select_of_an_unknown_property_is_a_400(world: World) -> None:
    response = world.get("/users?$select=displayName,favouriteColour")
    assert response.status_code == 400
    assert error(response)["message"] == (
        "Could not find a property named 'favouriteColour' on type 'microsoft.graph.user'."
    )


@pytest.mark.parametrize("prop", ["mailboxSettings", "aboutMe"])
def test_single_user_properties_cannot_be_selected_on_the_collection(
    world: World, prop: str
) -> None:
    # user-list.md: "../users?$select=aboutMe returns a 501 Not Implemented error code";
    # mailboxSettings is in the same list of single-user-only properties.
    response = world.get(f"/users?$select={prop}")
    assert response.status_code == 501
    assert error(response)["code"] == "NotImplemented"


# --- $filter -----------------------------------------------------------------------------------


def _ids(world: World, url: str, **kwargs: object) -> set[str]:
    return {item["id"] for item in page_all(world, url, **kwargs)}


def test_filters_the_service_uses(world: World) -> None:
    member = world.user("abby", displayName="Abby Member", mail="Abby@Fabrikam.example")
    guest = world.user(
        "guest_outlook.com#EXT#",
        displayName="Abner Guest",
        userType="Guest",
        mail="guest@outlook.com",
    )
    disabled = world.user("carl", displayName="Carl Disabled", accountEnabled=False)
    tenant_users = world.tenant.users.values()
    members = {u.id for u in tenant_users if u.user_type == "Member" and u.deleted_at is None}
    assert _ids(world, "/users?$filter=userType eq 'Member'&$select=id") == members
    assert _ids(world, "/users?$filter=userType eq 'Guest'&$select=id") == {guest.id}
    # aad-advanced-queries.md, option 1: works without advanced query parameters.
    assert _ids(world, "/users?$filter=accountEnabled eq false&$select=id") == {disabled.id}
    # Directory string comparisons ignore case.
    assert _ids(world, "/users?$filter=mail eq 'abby@fabrikam.example'&$select=id") == {member.id}
    assert _ids(world, f"/users?$filter=id in ('{member.id}','{guest.id}')&$select=id") == {
        member.id,
        guest.id,
    }
    assert _ids(world, "/users?$filter=startswith(displayName,'Ab')&$select=id") == {
        member.id,
        guest.id,
    }
    assert _ids(
        world,
        "/users?$filter=startswith(displayName,'Ab') and userType eq 'Member'&$select=id",
    ) == {member.id}
    assert _ids(
        world, "/users?$filter=userType eq 'Guest' or accountEnabled eq false&$select=id"
    ) == {guest.id, disabled.id}


def test_ne_and_not_need_advanced_query_parameters(world: World) -> None:
    disabled = world.user("dora", accountEnabled=False)
    # aad-advanced-queries.md, option 2: `ne` only with ConsistencyLevel and $count=true.
    response = world.get("/users?$filter=accountEnabled ne true")
    assert response.status_code == 400
    assert error(response)["code"] == "Request_UnsupportedQuery"
    assert error(response)["message"].startswith("Operator 'ne' is not supported")
    response = world.get("/users?$filter=accountEnabled ne true&$count=true", headers=EVENTUAL)
    assert response.status_code == 200
    assert {v["id"] for v in response.json()["value"]} == {disabled.id}
    assert response.json()["@odata.count"] == 1
    response = world.get("/users?$filter=not(accountEnabled eq true)")
    assert response.status_code == 400
    response = world.get(
        "/users?$filter=NOT startsWith(displayName, 'Conf')&$count=true", headers=EVENTUAL
    )
    assert response.status_code == 200


def test_endswith_without_advanced_parameters_gives_the_documented_error(world: World) -> None:
    guest = world.user("adelev_adatum.com#EXT#", mail="AdeleV@adatum.com")
    # aad-advanced-queries.md: the endsWith example and its error.
    url = "/users?$filter=endsWith(userPrincipalName,'%23EXT%23@" + world.tenant.domain + "')"
    response = world.get(url)
    assert response.status_code == 400
    assert error(response)["code"] == "Request_UnsupportedQuery"
    assert error(response)["message"] == (
        "Operator 'endsWith' is not supported because the required parameters might be missing. "
        "Try adding $count=true query parameter and ConsistencyLevel:eventual header. Refer to "
        "https://aka.ms/graph-docs/advanced-queries for more information"
    )
    response = world.get(url + "&$count=true&$select=id,displayName,mail", headers=EVENTUAL)
    assert response.status_code == 200
    assert [v["id"] for v in response.json()["value"]] == [guest.id]


def test_unsupported_filters_are_refused_like_graph(world: World) -> None:
    response = world.get("/users?$filter=createdDateTime ge 2021-11-01")
    assert response.status_code == 400
    response = world.get("/users?$filter=jobTitle gt 'a'")
    assert response.status_code == 400
    assert error(response)["code"] == "Request_UnsupportedQuery"
    response = world.get("/users?$filter=displayName eq")
    assert response.status_code == 400


def test_group_filters(world: World) -> None:
    unified = world.group("Sales", groupTypes=["Unified"], mailEnabled=True, securityEnabled=False)
    security = world.group("Security Team", securityEnabled=True)
    assert _ids(world, "/groups?$filter=groupTypes/any(c:c eq 'Unified')&$select=id") == {
        unified.id
    }
    assert _ids(world, "/groups?$filter=securityEnabled eq true&$select=id") == {security.id}
    body = world.get(f"/groups/{unified.id}").json()
    assert body["groupTypes"] == ["Unified"]
    assert body["@odata.context"].endswith("$metadata#groups/$entity")


def test_filter_parser_knows_the_forms() -> None:
    compiled = compile_filter("groupTypes/any(c:c eq 'Unified')", GROUP)
    assert compiled.needs_advanced is None
    a, b = "0c4e2f3a-1b2c-4d5e-8f90-a1b2c3d4e5f6", "7d1e9a2b-3c4d-4e5f-9a0b-c1d2e3f4a5b6"
    assert compile_filter(f"id eq '{a}' or id eq '{b}'", USER).ids == [a, b]
    assert compile_filter(f"id in ('{a}','{b}')", USER).ids == [a, b]
    # Directory ids are GUIDs: anything else makes Graph refuse the whole filter.
    with pytest.raises(GraphError) as refused:
        compile_filter(f"id in ('{a}','not-an-id')", USER)
    assert refused.value.status == 400 and "not-an-id" in refused.value.message
    assert compile_filter("not(userType eq 'Guest')", USER).needs_advanced == "not"
    with pytest.raises(GraphError):
        compile_filter("contains(displayName,'x')", USER)
    with pytest.raises(GraphError):
        compile_filter("(userType eq 'Guest'", USER)


# --- $count, $search, $orderby -----------------------------------------------------------------


def test_count_is_silently_ignored_without_consistency_level(world: World) -> None:
    # aad-advanced-queries.md: GET /users?$count=true without the header "silently ignores".
    body = world.get("/users?$count=true").json()
    assert "@odata.count" not in body
    body = world.get("/users?$count=true&$top=1", headers=EVENTUAL).json()
    live = sum(1 for u in world.tenant.users.values() if u.deleted_at is None)
    assert body["@odata.count"] == live
    # @odata.count is only on the first page (paging.md).
    second = (
        world.get(body["@odata.nextLink"], headers=EVENTUAL).json()
        if "@odata.nextLink" in body
        else {}
    )
    assert "@odata.count" not in second


def test_count_segment_needs_consistency_level(world: World) -> None:
    response = world.get("/users/$count")
    assert response.status_code == 400
    assert error(response)["code"] == "Request_BadRequest"
    assert error(response)["message"] == "$count is not currently supported."
    response = world.get("/users/$count", headers=EVENTUAL)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert int(response.text) == sum(1 for u in world.tenant.users.values() if u.deleted_at is None)


def test_search_needs_consistency_level_and_matches_word_starts(world: World) -> None:
    ward = world.user("oscarward", displayName="Oscar Ward")
    admin1 = world.user("contosoadmin1", displayName="contosoAdmin1")
    world.user("zed", displayName="Zed Nobody")
    response = world.get('/users?$search="displayName:wa"')
    assert response.status_code == 400
    assert error(response) | {"innerError": None} == {
        "code": "Request_UnsupportedQuery",
        "message": "Request with $search query parameter only works through MSGraph with a "
        "special request header: 'ConsistencyLevel: eventual'",
        "innerError": None,
    }
    # user-list.md, examples 6 and 7.
    body = world.get(
        '/users?$search="displayName:wa"&$orderby=displayName&$count=true', headers=EVENTUAL
    ).json()
    assert [v["id"] for v in body["value"]] == [ward.id]
    assert body["@odata.count"] == 1
    body = world.get(
        '/users?$search="displayName:wa" OR "displayName:ad"&$orderby=displayName&$count=true',
        headers=EVENTUAL,
    ).json()
    # The tenant's admin ("... Administrator") matches "ad" too.
    assert world.admin.display_name is not None
    assert "Admin" in world.admin.display_name
    assert {v["id"] for v in body["value"]} == {ward.id, admin1.id, world.admin.id}


def test_group_search_for_the_picker(world: World) -> None:
    sales = world.group("Sales and Marketing")
    world.group("Engineering")
    body = world.get('/groups?$search="displayName:sal"', headers=EVENTUAL).json()
    assert [g["id"] for g in body["value"]] == [sales.id]


def test_orderby_display_name_and_with_filter_only_as_advanced_query(world: World) -> None:
    for name in ("Charlie", "alice", "Bob"):
        world.user(name.lower() + "x", displayName=name)
    names = [
        v["displayName"] for v in page_all(world, "/users?$orderby=displayName&$select=displayName")
    ]
    assert names == sorted(names, key=lambda n: (n is None, (n or "").casefold()))
    response = world.get("/users?$filter=startswith(displayName,'a')&$orderby=displayName")
    assert response.status_code == 400
    # user-list.md, example 4.
    response = world.get(
        "/users?$filter=startswith(displayName,'a')&$orderby=displayName&$count=true&$top=1",
        headers=EVENTUAL,
    )
    assert response.status_code == 200
    assert response.json()["value"][0]["displayName"] == "alice"


# --- authentication and permissions -----------------------------------------------------------


def test_missing_or_bad_token_is_401(world: World) -> None:
    with world.client() as client:
        response = client.get("/users")
    assert response.status_code == 401
    assert error(response)["code"] == "InvalidAuthenticationToken"
    response = world.get("/users", token="not-a-jwt")
    assert response.status_code == 401
    assert error(response)["code"] == "InvalidAuthenticationToken"


def test_missing_permission_is_403(world: World) -> None:
    token = world.token(roles={"Contacts.Read"})
    for url in ("/users", "/groups", "/users/delta", "/organization"):
        response = world.get(url, token=token)
        assert response.status_code == 403, url
        assert error(response)["code"] == "Authorization_RequestDenied"


def test_delegated_user_read_reads_me_only(world: World) -> None:
    token = world.token(world.admin, scopes={"User.Read"})
    response = world.get("/me", token=token)
    assert response.status_code == 200
    assert response.json()["id"] == world.admin.id
    assert world.get("/users", token=token).status_code == 403
    app_token = world.token()
    response = world.get("/me", token=app_token)
    assert response.status_code == 400


# --- single users, deleted items ---------------------------------------------------------------


def test_get_user_by_id_or_upn_and_404_once_deleted(world: World) -> None:
    soft = world.user("soft")
    hard = world.user("hard")
    assert world.get(f"/users/{soft.id}").json()["id"] == soft.id
    assert world.get(f"/users/{soft.user_principal_name}").json()["id"] == soft.id
    mutations.soft_delete_user(world.tenant, soft.id)
    mutations.hard_delete_user(world.tenant, hard.id)
    for user in (soft, hard):
        response = world.get(f"/users/{user.id}")
        assert response.status_code == 404
        assert error(response)["code"] == "Request_ResourceNotFound"
    deleted = page_all(world, "/directory/deletedItems/microsoft.graph.user")
    assert [d["id"] for d in deleted] == [soft.id]
    assert deleted[0]["deletedDateTime"]
    assert soft.id not in {v["id"] for v in page_all(world, "/users?$select=id")}
    assert world.get(f"/directory/deletedItems/{soft.id}").json()["id"] == soft.id


# --- memberships -------------------------------------------------------------------------------


def test_members_transitive_members_and_member_of(world: World) -> None:
    u1, u2, u3 = world.user("m1"), world.user("m2"), world.user("m3")
    inner = world.group("Inner", members=[u2.id])
    outer = world.group("Outer", members=[u1.id, inner.id])
    world.group("Other", members=[u3.id])
    members = page_all(world, f"/groups/{outer.id}/members?$top=1")
    assert {(m["@odata.type"], m["id"]) for m in members} == {
        ("#microsoft.graph.user", u1.id),
        ("#microsoft.graph.group", inner.id),
    }
    body = world.get(f"/groups/{outer.id}/members?$top=1").json()
    assert body["@odata.context"].endswith("$metadata#directoryObjects")
    assert "@odata.nextLink" in body
    transitive = page_all(world, f"/groups/{outer.id}/transitiveMembers")
    assert {m["id"] for m in transitive} == {u1.id, u2.id, inner.id}
    users_only = page_all(world, f"/groups/{outer.id}/transitiveMembers/microsoft.graph.user")
    assert {m["id"] for m in users_only} == {u1.id, u2.id}
    selected = page_all(world, f"/groups/{outer.id}/members?$select=id,displayName")
    assert all(set(m) == {"@odata.type", "id", "displayName"} for m in selected)
    assert [g["id"] for g in page_all(world, f"/users/{u2.id}/memberOf")] == [inner.id]
    assert {g["id"] for g in page_all(world, f"/users/{u2.id}/transitiveMemberOf")} == {
        inner.id,
        outer.id,
    }
    assert (
        world.get(
            f"/groups/{outer.id}/members", token=world.token(roles={"User.Read.All"})
        ).status_code
        == 403
    )


# --- mailbox settings --------------------------------------------------------------------------


def test_user_purpose_per_user_with_the_mailbox_access_rule(world: World) -> None:
    shared = world.user("sales-desk", userPurpose="shared", accountEnabled=False)
    other_shared = world.user("support-desk", userPurpose="shared", accountEnabled=False)
    mutations.add_mailbox_member(world.tenant, shared.id, world.admin.id)
    # App-only with MailboxSettings.Read reads any mailbox.
    response = world.get(f"/users/{shared.id}/mailboxSettings/userPurpose")
    assert response.status_code == 200
    assert response.json()["value"] == "shared"
    assert response.json()["@odata.context"].endswith(
        f"users('{shared.id}')/mailboxSettings/userPurpose"
    )
    # Delegated: own mailbox and mailboxes the user has full access to; others are denied.
    token = world.token(world.admin, scopes={"MailboxSettings.Read", "User.Read"})
    assert world.get("/me/mailboxSettings/userPurpose", token=token).json()["value"] == "user"
    assert (
        world.get(f"/users/{shared.id}/mailboxSettings/userPurpose", token=token).json()["value"]
        == "shared"
    )
    response = world.get(f"/users/{other_shared.id}/mailboxSettings/userPurpose", token=token)
    assert response.status_code == 403
    assert error(response)["code"] == "ErrorAccessDenied"
    assert error(response)["message"] == "Access is denied. Check credentials and try again."
    # Without MailboxSettings.Read.
    response = world.get(
        f"/users/{shared.id}/mailboxSettings/userPurpose",
        token=world.token(roles={"User.Read.All"}),
    )
    assert response.status_code == 403
    assert error(response)["code"] == "ErrorAccessDenied"
    # A single user may $select mailboxSettings.
    body = world.get(f"/users/{shared.id}?$select=id,mailboxSettings").json()
    assert body["mailboxSettings"]["userPurpose"] == "shared"
