"""Every route of the OpenAPI document, with every kind of credential answers as the contract says:
generated from openapi/openapi.json, so a new route cannot be left out."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

from tests.cloud import Cloud
from tests.conftest import ADMIN_KEY, Api
from tests.sync.helpers import scenario

OPENAPI = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"
# Routes that take no credential at all (the callback, Graph's webhooks, operations, SSO).
PUBLIC = re.compile(
    r"^/(healthz|readyz|metrics|docs|redoc|openapi\.json|integration/|webhooks/|sso/)"
)


def operations() -> list[tuple[str, str]]:
    spec = json.loads(OPENAPI.read_text())
    return sorted(
        (method.upper(), path)
        for path, ops in spec["paths"].items()
        for method in ops
        if method in ("get", "post", "put", "patch", "delete")
    )


def kind(path: str) -> str:
    if PUBLIC.match(path):
        return "public"
    if path.startswith("/api/v1/pbxes"):
        return "operator"
    if path.startswith("/api/v1/me"):
        return "linkus"
    return "pbx"


async def _objects(api: Api, cloud: Cloud) -> tuple[dict[str, str], dict[str, str], str]:
    """A connected PBX with one object of every kind; (path values, its headers, its id)."""
    s = await scenario(api, cloud, users=2, groups=0, seed=5)
    await s.put_rules("user-sync", {"enabled": True})
    [run] = await s.run_worker()
    h = s.h
    ext = (
        await api.client.post(
            "/api/v1/extensions", json={"number": "9001", "first_name": "a"}, headers=h
        )
    ).json()
    group = (
        await api.client.post("/api/v1/extension-groups", json={"name": "g"}, headers=h)
    ).json()
    book = (await api.client.post("/api/v1/phonebooks", json={"name": "b"}, headers=h)).json()
    contact = (
        await api.client.post(
            f"/api/v1/phonebooks/{book['id']}/contacts",
            json={"first_name": "c", "mobile_phone": "1"},
            headers=h,
        )
    ).json()
    values = {
        "pbx_id": s.pbx["id"],
        "ext_id": ext["id"],
        "group_id": group["id"],
        "book_id": book["id"],
        "contact_id": contact["id"],
        "run_id": run["id"],
    }
    return values, h, s.pbx["id"]


def _fill(path: str, values: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in values, f"the sweep has no value for {{{name}}} in {path}: add one"
        return values[name]

    return re.sub(r"\{([a-z_]+)\}", one, path)


async def test_every_route_answers_each_credential_as_the_contract_says(
    sync_api: Api, cloud: Cloud
) -> None:
    api = sync_api
    values, owner, owner_id = await _objects(api, cloud)
    _, intruder = await api.new_pbx()
    credentials = {
        "none": {},
        "wrong": {"Authorization": "Bearer pbx_not-a-key"},
        "malformed": {"Authorization": "Basic Zm9vOmJhcg=="},
        "operator": {"Authorization": f"Bearer {ADMIN_KEY}"},
        "pbx": owner,
        "other_pbx": intruder,
    }
    allowed: dict[str, set[str]] = {
        "operator": {"operator"},
        "pbx": {"pbx", "other_pbx"},
        "linkus": set(),
    }
    ops = operations()
    assert len(ops) > 50
    wrong: list[str] = []
    for method, template in ops:
        route_kind = kind(template)
        if route_kind == "public":
            continue
        url = _fill(template, values)
        for name, headers in credentials.items():
            if name in ("pbx", "operator") and name in allowed[route_kind] and method != "GET":
                continue  # the rightful caller's writes are the other suites' business
            if name == "other_pbx" and route_kind == "operator":
                continue  # covered by "pbx" below: a PBX key is no operator key
            body = {} if method in ("POST", "PUT", "PATCH") else None
            resp = await api.client.request(method, url, json=body, headers=headers)
            status = resp.status_code
            got = f"{method} {template} with {name}: {status}"
            if status >= 500:
                wrong.append(got)
            elif name in allowed[route_kind]:
                if status == 401:
                    wrong.append(got)
                if name == "other_pbx" and "{" in template and status != 404:
                    # A body refused before the lookup (422) says nothing of the object:
                    # the same request for an id that exists nowhere answers alike.
                    nowhere = _fill(template, dict.fromkeys(values, str(uuid.uuid4())))
                    control = await api.client.request(method, nowhere, json=body, headers=headers)
                    if (control.status_code, control.json().get("code")) != (
                        status,
                        resp.json().get("code"),
                    ):
                        wrong.append(got + f" (an unknown id answers {control.status_code})")
                if name == "other_pbx" and owner_id in resp.text:
                    wrong.append(got + " (leaked the owner's data)")
            elif status != 401 or resp.json().get("code") != "unauthorized":
                wrong.append(got + " (expected 401 unauthorized)")
            elif resp.headers.get("content-type", "").split(";")[0] != "application/problem+json":
                wrong.append(got + " (401 without a problem document)")
        # A PBX key on an operator route: 401.
        if route_kind == "operator":
            resp = await api.client.request(
                method, url, json={} if method != "GET" else None, headers=owner
            )
            if resp.status_code != 401:
                wrong.append(f"{method} {template} with pbx: {resp.status_code} (expected 401)")
    assert wrong == []
    # Nothing the intruder sent changed the owner's objects.
    for name in ("ext_id", "group_id", "book_id"):
        route = {"ext_id": "extensions", "group_id": "extension-groups", "book_id": "phonebooks"}[
            name
        ]
        if name == "book_id":
            books = (await api.client.get("/api/v1/phonebooks", headers=owner)).json()["items"]
            assert values[name] in {b["id"] for b in books}
        else:
            got = await api.client.get(f"/api/v1/{route}/{values[name]}", headers=owner)
            assert got.status_code == 200, got.text
