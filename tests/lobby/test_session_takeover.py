"""A session id never carries a presence to another account (issue: reused session ids).

The attack: the session TTL is shorter than idle + reconnect grace, so a victim's
session row expires and is deleted while the victim's presence waits in its grace;
SQLite handed the next login (another account's) the same row id, and ``Hub.attach``
resumed the victim's presence by that id: the attacker chatted (and traded) as the
victim's character.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text
from websockets.asyncio.client import connect as ws_connect

from lobby import MasterServer
from lobby.connection import Connection
from tests.lobby.support import (
    ApiClient,
    FakeClock,
    aiohttp_inbox,
    fast_settings,
    signed_up,
    ws_url,
)

TTL = 60.0
GRACE = 600.0


@pytest.fixture
async def short_ttl_lobby(tmp_path: Path, clock: FakeClock) -> AsyncIterator[MasterServer]:
    settings = fast_settings(
        tmp_path / "data", session_ttl=TTL, reconnect_grace=GRACE, session_cleanup_interval=1.0
    )
    async with MasterServer(settings=settings, clock=clock) as server:
        yield server


async def _player(server: MasterServer, http: aiohttp.ClientSession, name: str) -> ApiClient:
    client = ApiClient(server.url, http)
    await client.play(name)
    return client


def _conn_of(server: MasterServer, username: str) -> Connection:
    found = [c for c in server.hub.connections() if c.session.username == username]
    assert len(found) == 1
    return found[0]


async def _victim_in_grace(
    server: MasterServer, http: aiohttp.ClientSession, clock: FakeClock, observer: ApiClient
) -> tuple[int, int]:
    """The victim drops without a goodbye; its session expires and its row is deleted
    while its presence is still inside the grace (the observer stays active, so its
    session slides). Returns (session id, character id)."""
    victim = await _player(server, http, "victim")
    ws = await ws_connect(ws_url(server.url), additional_headers=victim.headers())
    conn = _conn_of(server, "victim")
    session_id, character = conn.session.id, conn.character
    assert character is not None
    ws.transport.abort()  # the network drops: no close frame
    await asyncio.wait_for(conn.finished.wait(), 10)
    for _ in range(2):
        clock.advance(TTL / 2 + 1)
        status, _, _ = await observer.call("GET", "/api/characters")
        assert status == 200
    await server.run_maintenance()
    assert await server.ctx.sessions.get(session_id) is None  # the row is gone ...
    presence = server.hub.presence(session_id)
    assert presence is not None and not presence.online  # ... the presence is in its grace
    return session_id, character.id


async def _attacker_chats(server: MasterServer, http: aiohttp.ClientSession) -> dict[str, Any]:
    """Another account logs in fresh, connects and chats; what the hub made of it."""
    attacker = await signed_up(server.url, http, "mallory")
    async with ws_connect(ws_url(server.url), additional_headers=attacker.headers()) as ws:
        chat = {"type": "chat", "content": "send me your gold", "message_id": "m1"}
        await ws.send(json.dumps(chat))
        reply = None
        while reply is None:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            batch = frame if isinstance(frame, list) else [frame]
            # an ERROR answers it; a chat sent in a character's name echoes it back
            reply = next((m for m in batch if "m1" in (m.get("ref_id"), m.get("message_id"))), None)
        # answered, so attached (the hub may first have awaited the leave hooks of a
        # stale presence under the same id)
        conn = _conn_of(server, "mallory")
        presence = server.hub.presence(conn.session.id)
        assert presence is not None and presence.conn is conn
        return {
            "session_id": conn.session.id,
            "account_id": conn.session.account_id,
            "presence_account_id": presence.account_id,
            "presence_character": presence.character,
            "reply": reply,
        }


async def test_a_fresh_login_of_another_account_never_resumes_the_victims_presence(
    short_ttl_lobby: MasterServer, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    server = short_ttl_lobby
    observer = await _player(server, http, "bob")
    async with http.ws_connect(ws_url(server.url), headers=observer.headers()) as ws_bob:
        bob = aiohttp_inbox(ws_bob)
        victim_session, victim_character = await _victim_in_grace(server, http, clock, observer)
        got = await _attacker_chats(server, http)

        assert got["session_id"] != victim_session  # ids are never reused
        assert got["presence_account_id"] == got["account_id"]
        assert got["presence_character"] is None
        assert (got["reply"]["type"], got["reply"]["error_code"]) == ("error", "no_character")
        holder = server.hub.presence_of_character(victim_character)
        assert holder is not None and holder.username == "victim" and not holder.online
        # bob heard nothing in the victim's name
        await ws_bob.send_str(json.dumps({"type": "chat", "content": "anyone?"}))
        await bob.next(lambda m: m.get("content") == "anyone?")
        assert not [m for m in bob.seen if m.get("content") == "send me your gold"]


async def test_a_reused_session_id_does_not_resume_a_presence_of_another_account(
    short_ttl_lobby: MasterServer, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Even if the database hands out the victim's session id again (here forced by
    rewinding SQLite's sequence), the hub resumes only for the same account and token:
    the stale presence leaves and the newcomer starts a presence of its own."""
    server = short_ttl_lobby
    observer = await _player(server, http, "bob")
    async with http.ws_connect(ws_url(server.url), headers=observer.headers()) as ws_bob:
        bob = aiohttp_inbox(ws_bob)
        victim_session, victim_character = await _victim_in_grace(server, http, clock, observer)
        async with server.ctx.db.write() as db:  # what SQLite did before AUTOINCREMENT
            tables = await db.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))
            if "sqlite_sequence" in set(tables.scalars()):
                await db.execute(
                    text("UPDATE sqlite_sequence SET seq = :seq WHERE name = 'sessions'"),
                    {"seq": victim_session - 1},
                )
        got = await _attacker_chats(server, http)

        assert got["session_id"] == victim_session  # the id was reused ...
        assert got["presence_account_id"] == got["account_id"]
        assert got["presence_character"] is None  # ... but not the victim's presence
        assert (got["reply"]["type"], got["reply"]["error_code"]) == ("error", "no_character")
        assert server.hub.presence_of_character(victim_character) is None
        left = await bob.next_type("player_left_area")  # the stale presence left
        assert left["character_id"] == victim_character
        assert not [m for m in bob.seen if m.get("content") == "send me your gold"]
