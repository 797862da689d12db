"""Reconnect grace, slow consumers, replacement and shutdown of WebSocket clients."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from websockets.asyncio.client import connect as ws_connect

from lobby import MasterServer
from lobby.connection import Connection
from protocol.messages import ChatMessage
from tests.lobby.support import (
    ApiClient,
    FakeClock,
    Inbox,
    aiohttp_inbox,
    close_code,
    fast_settings,
    raw_ws,
    signed_up,
    websockets_inbox,
    ws_url,
)

Player = Callable[..., Awaitable[tuple[ApiClient, dict[str, Any]]]]


def _conn_of(server: MasterServer, character_id: int) -> Connection:
    presence = server.hub.presence_of_character(character_id)
    assert presence is not None and presence.conn is not None
    return presence.conn


@dataclass
class _Dropped:
    """Alice's connection dropped by the network while Bob, connected, watched her arrive."""

    alice: ApiClient
    a_char: dict[str, Any]
    ws_b: aiohttp.ClientWebSocketResponse
    b: Inbox
    url: str


@asynccontextmanager
async def _alice_dropped(
    lobby: MasterServer, player: Player, http: aiohttp.ClientSession
) -> AsyncIterator[_Dropped]:
    alice, a_char = await player("alice")
    bob, _ = await player("bob")
    url = ws_url(lobby.url)
    async with http.ws_connect(url, headers=bob.headers()) as ws_b:
        b = aiohttp_inbox(ws_b)
        ws_a = await ws_connect(url, additional_headers=alice.headers())
        await b.next_type("player_joined_area")
        conn = _conn_of(lobby, a_char["id"])
        ws_a.transport.abort()  # the network drops: no close frame
        await asyncio.wait_for(conn.finished.wait(), 10)
        yield _Dropped(alice, a_char, ws_b, b, url)


async def test_reconnect_within_grace_is_silent_and_gets_the_backlog(
    lobby: MasterServer, player: Player, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with _alice_dropped(lobby, player, http) as d:
        alice, a_char, ws_b, b, url = d.alice, d.a_char, d.ws_b, d.b, d.url
        await ws_b.send_str(json.dumps({"type": "chat", "content": "while you were away"}))
        await b.next_type("chat")
        clock.advance(lobby.settings.reconnect_grace - 1)
        await lobby.run_maintenance()

        async with ws_connect(url, additional_headers=alice.headers()) as ws_a2:
            a2 = websockets_inbox(ws_a2)
            got = await a2.next_type("chat")
            assert got["content"] == "while you were away"
            await ws_a2.send(json.dumps({"type": "chat", "content": "back"}))
            await b.next(lambda m: m.get("content") == "back")
            kinds = {m["type"] for m in b.seen}
            assert "player_left_area" not in kinds
            assert [m["type"] for m in b.seen].count("player_joined_area") == 1

        # a deliberate close (code 1000) leaves at once
        left = await b.next_type("player_left_area")
        assert left["character_id"] == a_char["id"]


async def test_grace_expiry_announces_the_leave(
    lobby: MasterServer, player: Player, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with _alice_dropped(lobby, player, http) as d:
        a_char, b = d.a_char, d.b
        assert lobby.hub.presence_of_character(a_char["id"]) is not None
        clock.advance(lobby.settings.reconnect_grace)
        await lobby.run_maintenance()
        left = await b.next_type("player_left_area")
        assert left["character_id"] == a_char["id"]
        assert lobby.hub.presence_of_character(a_char["id"]) is None


async def test_slow_consumer_is_cut_off_with_bounded_memory(
    tmp_path: Path, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    cap = 32
    settings = fast_settings(
        tmp_path / "d", ws_send_queue_max=cap, ws_backlog_max=8, ws_close_timeout=1.0
    )
    async with MasterServer(settings=settings, clock=clock) as server:
        slow, fast = ApiClient(server.url, http), ApiClient(server.url, http)
        for client, name in ((slow, "slow"), (fast, "fast")):
            await client.sign_up(name)
        assert slow.token is not None
        sock = await raw_ws(server.port, slow.token)
        try:
            async with http.ws_connect(ws_url(server.url), headers=fast.headers()) as ws_fast:
                conns = {c.session.username: c for c in server.hub.connections()}
                victim = conns["slow"]
                payload = ChatMessage(sender_id=1, sender_name="Bard", content="la" * 500)
                sent = 0
                # Bounded producer: at most 20 000 messages of ~1 KiB; it yields to the
                # event loop after each one so the writer runs as in real life.
                while victim.close_code is None and sent < 20_000:
                    payload.message_id = f"m{sent}"
                    server.hub.broadcast(payload, where=lambda p: p.username == "slow")
                    sent += 1
                    assert victim.queue_length <= cap
                    await asyncio.sleep(0)
                await asyncio.wait_for(victim.finished.wait(), 10)
                assert victim.close_code == 1013
                assert victim.max_queue_seen <= cap
                assert victim.queue_length == 0
                # inside the reconnect grace, what is kept for it stays bounded too
                for i in range(100):
                    server.hub.broadcast(
                        ChatMessage(sender_id=1, sender_name="Bard", content=f"later {i}"),
                        where=lambda p: p.username == "slow",
                    )
                presence = next(p for p in server.hub.presences() if p.username == "slow")
                assert len(presence.backlog) == settings.ws_backlog_max
                # the other client is unaffected
                f = aiohttp_inbox(ws_fast)
                await ws_fast.send_str(json.dumps({"type": "heartbeat", "message_id": "f1"}))
                assert (await f.next_type("heartbeat"))["reply_to"] == "f1"
            # the slow socket was dropped by the server: reading ends in EOF or a reset
            loop = asyncio.get_running_loop()

            async def drain() -> None:
                try:
                    while await loop.sock_recv(sock, 65536):
                        pass
                except ConnectionResetError:
                    pass

            await asyncio.wait_for(drain(), 20)
        finally:
            sock.close()


async def test_second_connection_replaces_the_first(
    lobby: MasterServer, player: Player, http: aiohttp.ClientSession
) -> None:
    alice, _ = await player("alice")
    url = ws_url(lobby.url)
    async with http.ws_connect(url, headers=alice.headers()) as first:
        async with http.ws_connect(url, headers=alice.headers()) as second:
            assert await close_code(first) == 4000
            s = aiohttp_inbox(second)
            await second.send_str(json.dumps({"type": "heartbeat", "message_id": "h2"}))
            assert (await s.next_type("heartbeat"))["reply_to"] == "h2"


async def test_stop_closes_clients_with_1001_after_flushing(
    tmp_path: Path, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    server = MasterServer(settings=fast_settings(tmp_path / "d"), clock=clock)
    await server.start()
    try:
        client = await signed_up(server.url, http, "alice")
        ws = await http.ws_connect(ws_url(server.url), headers=client.headers())
        async with ws:
            conn = server.hub.connections()[0]
            for i in range(50):
                conn.send(ChatMessage(sender_id=1, sender_name="Bard", content=f"n{i}"))
            stopping = asyncio.create_task(server.stop())
            contents: list[str] = []
            kinds: list[str] = []
            while True:
                msg = await ws.receive(timeout=10)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                data = json.loads(msg.data)
                for m in data if isinstance(data, list) else [data]:
                    kinds.append(m["type"])
                    if m["type"] == "chat":
                        contents.append(m["content"])
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1001
            assert contents == [f"n{i}" for i in range(50)]
            assert kinds[-1] == "disconnect"
            await asyncio.wait_for(stopping, 20)
    finally:
        await server.stop()
