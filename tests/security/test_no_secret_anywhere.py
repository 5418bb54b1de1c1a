"""Secrets, tokens and keys are absent from every database column in clear, from every answer and
from the logs, over a scenario that touches every capability: connect, user sync, Outlook
contacts, Teams presence and a Linkus sign-in with its self-service calls."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import text

from app.db import create_engine
from app.integration import repository
from app.models import Base
from tests.conftest import Api
from tests.contacts.helpers import add_contact, share
from tests.presence.helpers import PresenceWorld
from tests.sso.helpers import RETURN_URL, SsoScenario, bearer, sso_scenario


async def _scenario(api: Api, cloud: Any) -> tuple[SsoScenario, str, list[Any]]:
    """Every capability once: the scenario, the Linkus access token it was given, and the
    answers the service gave along the way."""
    sso = await sso_scenario(api, cloud, users=3, groups=0, seed=21)
    s = sso.s
    answers: list[Any] = []
    ext, upn = await sso.synced_user(0)
    owner = ext["entra_user_id"]
    share(s, owner)
    add_contact(s, owner, "Zoe", "Quinn")
    answers.append(
        await s.put_rules(
            "contacts-sync",
            {
                "enabled": True,
                "personal": {"enabled": True, "range": {"mode": "all"}},
                "shared": {"enabled": False, "mode": "all", "mailboxes": []},
            },
        )
    )
    answers += await s.run_worker()
    world = PresenceWorld(s)
    await world.presence_sync(True)
    await world.follow(ext)
    world.teams(owner, "Busy")
    await world.tick()
    answers.append(await world.presence(ext))
    landing = await sso.sign_in(upn)
    answers.append(landing.location)
    token = await sso.token(landing.params["sso_code"])
    assert token.status_code == 200, token.text
    linkus_token = str(token.json()["access_token"])
    for path in ("/api/v1/me/presence", "/api/v1/me/contacts", "/sso/userinfo"):
        me = await api.client.get(path, headers=bearer(linkus_token))
        assert me.status_code == 200, (path, me.text)
        answers.append(me.json())
    for path in ("/api/v1/integration", "/api/v1/integration/contacts-sync", "/api/v1/sync-runs"):
        answers.append((await api.client.get(path, headers=s.h)).json())
    return sso, linkus_token, answers


async def _every_row(database_url: str) -> str:
    engine = create_engine(database_url)
    dump = []
    try:
        async with engine.connect() as conn:
            for table in Base.metadata.sorted_tables:
                rows = (await conn.execute(text(f"SELECT * FROM {table.name}"))).all()
                dump.append(f"{table.name}: {rows!r}")
    finally:
        await engine.dispose()
    return "\n".join(dump)


async def test_no_secret_token_or_key_in_clear_in_rows_answers_or_logs(
    sync_api: Api, cloud: Any, database_url: str, capfd: pytest.CaptureFixture[str]
) -> None:
    sso, linkus_token, answers = await _scenario(sync_api, cloud)
    runtime = sync_api.app.state.runtime
    pbx_id = sso.pbx_id
    async with runtime.sessionmaker() as session:
        row = await repository.token_cache(session, pbx_id)
        assert row is not None
        cache = json.loads(runtime.box.decrypt(row.cache_enc, associated=f"token_cache:{pbx_id}"))
    refresh_tokens = [rt["secret"] for rt in cache["RefreshToken"].values()]
    graph_tokens = [token for token, _ in runtime.tokens.values()]
    assert refresh_tokens and graph_tokens
    secrets = {
        "client secret": sso.s.tenant.client_secret,
        "PBX API key": sso.s.h["Authorization"].removeprefix("Bearer "),
        "Linkus access token": linkus_token,
        **{f"refresh token {i}": t for i, t in enumerate(refresh_tokens)},
        **{f"Graph access token {i}": t for i, t in enumerate(graph_tokens)},
    }
    rows = await _every_row(database_url)
    said = json.dumps(answers, default=str)
    out, err = capfd.readouterr()
    # The scenario really ran: each capability left rows behind.
    for table in ("extensions", "contacts", "extension_presence", "token_caches"):
        assert f"{table}: []" not in rows, table
    assert RETURN_URL in said and "sso_code=" in said
    for name, secret in secrets.items():
        assert len(secret) >= 16, name
        assert secret not in rows, f"{name} in the database"
        assert secret not in said, f"{name} in an answer"
        assert secret not in out and secret not in err, f"{name} in the logs"
