"""Resume cursors on one lobby process: stamped pushes, a resume that skips what the client
had, a resume that cannot be served (``replay: gap``), and clients that never asked."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from lobby import MasterServer
from lobby.connection import Connection
from protocol.resume import RESUME_CURSOR_PARAM
from tests.lobby.support import ApiClient, FakeClock, Inbox, aiohttp_inbox, ws_url

Player = Callable[..., Awaitable[tuple[ApiClient, dict[str, Any]]]]


def _conn_of(server: MasterServer, character_id: int) -> Connection:
    presence = server.hub.presence_of_character(character_id)
    assert presence is not None and presence.conn is not None
    return presence.conn


async def _open(
    http: aiohttp.ClientSession, lobby: MasterServer, api: ApiClient, cursor: str | None
) -> tuple[aiohttp.ClientWebSocketResponse, Inbox]:
    params = None if cursor is None else {RESUME_CURSOR_PARAM: cursor}
    ws = await http.ws_connect(ws_url(lobby.url), headers=api.headers(), params=params)
    return ws, aiohttp_inbox(ws)


def _chats(inbox: Inbox) -> list[str]:
    return [m["content"] for m in inbox.seen if m.get("type") == "chat"]


async def test_pushes_carry_increasing_cursors_and_a_resume_replays_after_the_last_seen(
    lobby: MasterServer, player: Player, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    alice, a_char = await player("alice")
    bob, _ = await player("bob")
    ws_b, b = await _open(http, lobby, bob, None)
    ws_a, a = await _open(http, lobby, alice, "")
    for n in range(3):
        await ws_b.send_str(json.dumps({"type": "chat", "content": f"before {n}"}))
        await a.next(lambda m, n=n: m.get("content") == f"before {n}")
    cursors = [m["cursor"] for m in a.seen if m.get("type") == "chat"]
    keys = [tuple(int(x) for x in c.split("-")) for c in cursors]
    assert keys == sorted(keys) and len(set(keys)) == 3
    # a client that did not ask for cursors sees none (older clients: nothing new)
    assert not any("cursor" in m for m in b.seen)

    # the network drops Alice; Bob goes on chatting
    conn = _conn_of(lobby, a_char["id"])
    ws_a._response.connection.transport.abort()  # type: ignore[union-attr]  # no close frame
    await asyncio.wait_for(conn.finished.wait(), 10)
    for n in range(2):
        await ws_b.send_str(json.dumps({"type": "chat", "content": f"away {n}"}))
        await b.next(lambda m, n=n: m.get("content") == f"away {n}")
    clock.advance(lobby.settings.reconnect_grace - 1)

    # she resumes with the cursor of the last push she saw: the missed ones, once, in order
    ws_a, a = await _open(http, lobby, alice, cursors[-1])
    notice = await a.next_type("heartbeat")
    assert notice["replay"] == "complete"
    assert _chats(a) == ["away 0", "away 1"]
    await ws_b.send_str(json.dumps({"type": "chat", "content": "live"}))
    await a.next(lambda m: m.get("content") == "live")
    assert _chats(a) == ["away 0", "away 1", "live"]
    await ws_a.close()
    await ws_b.close()


async def test_a_resume_the_lobby_cannot_serve_is_told_a_gap(
    lobby: MasterServer, player: Player, http: aiohttp.ClientSession
) -> None:
    alice, _ = await player("alice")
    # a cursor this process never gave (another process's, or from before a restart)
    ws, inbox = await _open(http, lobby, alice, "5-17")
    notice = await inbox.next_type("heartbeat")
    assert notice["replay"] == "gap"
    await ws.close()


async def test_a_malformed_cursor_is_refused_before_the_upgrade(
    lobby: MasterServer, player: Player, http: aiohttp.ClientSession
) -> None:
    alice, _ = await player("alice")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await _open(http, lobby, alice, "latest")
    assert refused.value.status == 400
