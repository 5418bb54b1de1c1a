"""Hostile input on both databases: NUL characters, long id lists, timezones that are files or
folders, wildcards in searches, unknown methods, and the integrity errors of concurrent writes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, insert
from sqlalchemy.exc import IntegrityError

from app.db import create_engine, session_scope, sessionmaker, table_of
from app.db_errors import conflict_of
from app.directory.models import ExtensionGroupMember, Phonebook
from tests.conftest import Api

NUL = "\x00"


async def _ext(api: Api, headers: dict[str, str], number: str, **fields: Any) -> dict[str, Any]:
    body = {"number": number, "first_name": fields.pop("first_name", f"User {number}"), **fields}
    resp = await api.client.post("/api/v1/extensions", json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


@contextmanager
def statements(api: Api) -> Iterator[list[str]]:
    """The SQL statements the app runs meanwhile."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(str(args[2]))

    engine = api.app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


# NUL ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/extensions", {"number": "100", "first_name": f"a{NUL}b"}),
        ("POST", "/api/v1/phonebooks", {"name": f"x{NUL}"}),
        ("POST", "/api/v1/extension-groups", {"name": "g", "member_ids": [f"{NUL}"]}),
        ("PUT", "/api/v1/integration/sso", {"allowed_return_urls": [f"https://a{NUL}"]}),
        ("PUT", "/api/v1/integration/contacts-sync", {"personal": {"range": {f"k{NUL}": 1}}}),
        ("PATCH", "/api/v1/extensions/any", {"job_title": f"{NUL}"}),
    ],
)
async def test_nul_in_a_body_is_422_on_every_route(
    api: Api, method: str, path: str, body: dict[str, Any]
) -> None:
    _, h = await api.new_pbx()
    resp = await api.client.request(method, path, json=body, headers=h)
    assert resp.status_code == 422, resp.text
    problem = resp.json()
    assert problem["code"] == "validation_error"
    assert problem["errors"] == [{"loc": ["body"], "msg": "NUL characters are not allowed"}]
    assert resp.headers["content-type"] == "application/problem+json"


async def test_nul_in_operator_bodies_and_escaped_backslashes(api: Api) -> None:
    resp = await api.client.post(
        "/api/v1/pbxes", json={"name": "ok", "timezone": f"UTC{NUL}"}, headers=api.operator
    )
    assert resp.status_code == 422 and resp.json()["errors"][0]["msg"].startswith("NUL")
    # A backslash followed by the letters u0000 is text, not a NUL.
    _, h = await api.new_pbx()
    resp = await api.client.post("/api/v1/phonebooks", json={"name": "dir\\u0000x"}, headers=h)
    assert resp.status_code == 201 and resp.json()["name"] == "dir\\u0000x"


async def test_nul_in_query_is_422_and_in_path_ids_404(api: Api) -> None:
    _, h = await api.new_pbx()
    await _ext(api, h, "100")
    resp = await api.client.get("/api/v1/extensions?search=a%00b", headers=h)
    assert resp.status_code == 422 and resp.json()["errors"][0]["loc"] == ["query"]
    resp = await api.client.get("/api/v1/pbxes?cursor=%00", headers=api.operator)
    assert resp.status_code == 422
    for path in (
        "/api/v1/extensions/%00",
        "/api/v1/extension-groups/a%00b",
        "/api/v1/phonebooks/%00/contacts",
        "/api/v1/sync-runs/%00",
    ):
        resp = await api.client.get(path, headers=h)
        assert resp.status_code == 404, (path, resp.text)
        assert resp.json()["code"] == "not_found"
    resp = await api.client.get("/api/v1/pbxes/%00", headers=api.operator)
    assert resp.status_code == 404


async def test_nul_in_the_consent_callback_form_is_422(api: Api) -> None:
    resp = await api.client.post(
        "/integration/callback",
        content=b"state=a%00b&code=x",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert resp.status_code == 422


# Id lists -----------------------------------------------------------------------------------


async def test_id_lists_are_bounded_to_1000(api: Api) -> None:
    _, h = await api.new_pbx()
    book = (await api.client.post("/api/v1/phonebooks", json={"name": "B"}, headers=h)).json()
    many = [f"id-{n}" for n in range(1001)]
    for method, path, body in (
        ("PUT", f"/api/v1/phonebooks/{book['id']}/visibility", {"extension_ids": many}),
        ("PUT", f"/api/v1/phonebooks/{book['id']}/visibility", {"extension_group_ids": many}),
        ("POST", "/api/v1/extension-groups", {"name": "g", "member_ids": many}),
    ):
        resp = await api.client.request(method, path, json=body, headers=h)
        assert resp.status_code == 422, resp.text
        assert any("1000" in e["msg"] for e in resp.json()["errors"]), resp.json()
    resp = await api.client.post(
        "/api/v1/extension-groups", json={"name": "g", "member_ids": ["x" * 65]}, headers=h
    )
    assert resp.status_code == 422


async def test_visibility_of_1000_ids_is_a_few_set_based_queries(sync_api: Api) -> None:
    api = sync_api  # no background loop: every statement counted below is the request's
    _, h = await api.new_pbx()
    book = (await api.client.post("/api/v1/phonebooks", json={"name": "B"}, headers=h)).json()
    known = [(await _ext(api, h, str(100 + n)))["id"] for n in range(3)]
    group = (
        await api.client.post("/api/v1/extension-groups", json={"name": "G"}, headers=h)
    ).json()["id"]
    unknown = [f"missing-{n:04d}" for n in range(997)]
    started = time.perf_counter()
    with statements(api) as seen:
        resp = await api.client.put(
            f"/api/v1/phonebooks/{book['id']}/visibility",
            json={"extension_ids": known + unknown, "extension_group_ids": [group, "nope"]},
            headers=h,
        )
    elapsed = time.perf_counter() - started
    assert resp.status_code == 422 and resp.json()["code"] == "unknown_reference"
    assert resp.json()["ids"] == [*unknown, "nope"]
    lookups = [s for s in seen if " IN " in s.upper()]
    assert len(lookups) == 2, lookups  # one per kind, not one per id
    assert len(seen) < 10 and elapsed < 2, (len(seen), elapsed)
    resp = await api.client.put(
        f"/api/v1/phonebooks/{book['id']}/visibility",
        json={"extension_ids": known, "extension_group_ids": [group]},
        headers=h,
    )
    assert resp.status_code == 200
    assert resp.json()["visible_to"]["extension_ids"] == sorted(known)


# Timezones ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "zone", ["America", "Etc", "localtime", "Factory", "x" * 300, "../etc/passwd", "posixrules"]
)
async def test_timezone_must_be_an_iana_zone_name(api: Api, zone: str) -> None:
    resp = await api.client.post(
        "/api/v1/pbxes", json={"name": "tz", "timezone": zone}, headers=api.operator
    )
    assert resp.status_code == 422, resp.text
    pbx, _ = await api.new_pbx()
    resp = await api.client.patch(
        f"/api/v1/pbxes/{pbx['id']}", json={"timezone": zone}, headers=api.operator
    )
    assert resp.status_code == 422, resp.text


async def test_iana_zone_names_are_accepted(api: Api) -> None:
    for zone in ("Europe/Berlin", "America/Argentina/Buenos_Aires", "UTC", "Etc/GMT+5"):
        pbx, _ = await api.new_pbx(timezone=zone)
        assert pbx["timezone"] == zone


# Search, methods, headers -------------------------------------------------------------------


async def test_search_wildcards_match_themselves(api: Api) -> None:
    _, h = await api.new_pbx()
    await _ext(api, h, "100", first_name="Ann", last_name="100%")
    await _ext(api, h, "101", first_name="Bob", last_name="Plain")
    await _ext(api, h, "102", first_name="a_b")
    await _ext(api, h, "103", first_name="axb")

    async def names(search: str) -> list[str]:
        resp = await api.client.get("/api/v1/extensions", params={"search": search}, headers=h)
        assert resp.status_code == 200, resp.text
        return [e["first_name"] for e in resp.json()["items"]]

    assert await names("%") == ["Ann"]
    assert await names("_") == ["a_b"]
    assert await names("a_b") == ["a_b"]
    assert await names("\\") == []
    assert await names("10") == ["Ann", "Bob", "a_b", "axb"]  # number prefix


async def test_405_names_the_allowed_methods(api: Api) -> None:
    _, h = await api.new_pbx()
    resp = await api.client.put("/api/v1/extensions", headers=h)
    assert resp.status_code == 405
    assert set(resp.headers["allow"].replace(" ", "").split(",")) == {"GET", "POST"}
    assert resp.json()["code"] == "method_not_allowed"


async def test_handshake_and_every_answer_are_nosniff(api: Api) -> None:
    resp = await api.client.post("/webhooks/graph?validationToken=%3Cscript%3E")
    assert resp.status_code == 200 and resp.text == "<script>"
    assert resp.headers["content-type"].startswith("text/plain")
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert (await api.client.get("/healthz")).headers["x-content-type-options"] == "nosniff"


# Integrity errors ---------------------------------------------------------------------------


async def test_integrity_errors_are_told_apart_on_both_databases(
    api: Api, database_url: str
) -> None:
    pbx, h = await api.new_pbx()
    book = (await api.client.post("/api/v1/phonebooks", json={"name": "B"}, headers=h)).json()
    group = (
        await api.client.post("/api/v1/extension-groups", json={"name": "G"}, headers=h)
    ).json()
    engine = create_engine(database_url)
    maker = sessionmaker(engine)
    try:
        with pytest.raises(IntegrityError) as unique:
            async with session_scope(maker) as session:
                session.add(Phonebook(pbx_id=pbx["id"], name=book["name"], managed_by="pbx"))
        with pytest.raises(IntegrityError) as gone:
            async with session_scope(maker) as session:
                await session.execute(
                    insert(table_of(ExtensionGroupMember)),
                    [{"group_id": group["id"], "extension_id": "deleted-meanwhile"}],
                )
    finally:
        await engine.dispose()
    taken = conflict_of(unique.value)
    assert (taken.status, taken.code) == (409, "phonebook_name_taken")
    vanished = conflict_of(gone.value)
    assert (vanished.status, vanished.code) == (422, "reference_gone")


async def test_deeply_nested_api_bodies_are_422(api: Api) -> None:
    _, h = await api.new_pbx()
    deep = b'{"personal": {"range": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    resp = await api.client.put(
        "/api/v1/integration/contacts-sync",
        content=deep,
        headers={**h, "content-type": "application/json"},
    )
    assert resp.status_code == 422 and resp.json()["code"] == "validation_error"
