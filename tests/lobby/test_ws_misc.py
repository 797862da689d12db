"""WebSocket options and session interplay: compression, idle timeout, sliding, selection."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from lobby import MasterServer
from tests.lobby.support import (
    ApiClient,
    FakeClock,
    aiohttp_inbox,
    fast_settings,
    frame_messages,
    signed_up,
    ws_url,
)

Player = Callable[..., Awaitable[tuple[ApiClient, dict[str, Any]]]]


async def test_permessage_deflate_when_enabled(
    tmp_path: Path, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    settings = fast_settings(tmp_path / "d", ws_compress=True)
    async with MasterServer(settings=settings, clock=clock) as server:
        client = await signed_up(server.url, http, "zip")
        async with http.ws_connect(ws_url(server.url), headers=client.headers(), compress=15) as ws:
            assert ws.compress == 15  # negotiated
            await ws.send_str(json.dumps({"type": "heartbeat", "message_id": "z1"}))
            assert (await aiohttp_inbox(ws).next_type("heartbeat"))["reply_to"] == "z1"


async def test_idle_connection_is_closed(
    tmp_path: Path, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    settings = fast_settings(tmp_path / "d", ws_idle_timeout=0.2)
    async with MasterServer(settings=settings, clock=clock) as server:
        client = await signed_up(server.url, http, "idler")
        async with http.ws_connect(ws_url(server.url), headers=client.headers()) as ws:
            msg = await ws.receive(timeout=10)  # nothing sent: the lobby gives up
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1000
            assert ws.close_code == 1000


async def test_rest_use_keeps_a_listening_websocket_alive(
    lobby: MasterServer, player: Player, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    alice, _ = await player("alice")
    async with http.ws_connect(ws_url(lobby.url), headers=alice.headers()) as ws:
        for _ in range(3):
            clock.advance(lobby.settings.session_ttl - 100)
            assert (await alice.call("GET", "/api/characters"))[0] == 200
            await lobby.run_maintenance()
        await ws.send_str(json.dumps({"type": "heartbeat", "message_id": "alive"}))
        assert (await aiohttp_inbox(ws).next_type("heartbeat"))["reply_to"] == "alive"


async def test_selection_and_deletion_while_connected(
    lobby: MasterServer,
    player: Player,
    make_client: Callable[[], ApiClient],
    http: aiohttp.ClientSession,
) -> None:
    watcher, _ = await player("watcher")
    late = make_client()
    await late.sign_up("late")
    hero = await late.create_character("Latecomer", "Verdant Pact", "Mage")
    url = ws_url(lobby.url)
    async with (
        http.ws_connect(url, headers=watcher.headers()) as ws_w,
        http.ws_connect(url, headers=late.headers()) as ws_l,
    ):
        w, lt = aiohttp_inbox(ws_w), aiohttp_inbox(ws_l)
        await ws_l.send_str(json.dumps({"type": "chat", "content": "x"}))
        assert (await lt.next_type("error"))["error_code"] == "no_character"
        await late.select(hero["id"])
        joined = await w.next_type("player_joined_area")
        assert joined["character_id"] == hero["id"] and joined["faction"] == "Verdant Pact"
        await ws_l.send_str(json.dumps({"type": "chat", "content": "now I can"}))
        got = await w.next_type("chat")
        assert (got["sender_id"], got["content"]) == (hero["id"], "now I can")
        status, _, _ = await late.call("DELETE", f"/api/characters/{hero['id']}")
        assert status == 200
        left = await w.next_type("player_left_area")
        assert left["character_id"] == hero["id"]
        await ws_l.send_str(json.dumps({"type": "chat", "content": "gone"}))
        assert (await lt.next_type("error"))["error_code"] == "no_character"


async def test_queued_messages_are_batched_into_one_array_frame(
    lobby: MasterServer, player: Player, http: aiohttp.ClientSession
) -> None:
    from protocol.messages import ChatMessage

    alice, _ = await player("alice")
    async with http.ws_connect(ws_url(lobby.url), headers=alice.headers()) as ws:
        await ws.send_str(json.dumps({"type": "heartbeat", "message_id": "sync"}))
        while True:  # skip what services pushed on joining
            frame = json.loads((await ws.receive(timeout=10)).data)
            if any(m.get("reply_to") == "sync" for m in frame_messages(json.dumps(frame))):
                break
        await ws.send_str(json.dumps({"type": "heartbeat", "message_id": "one"}))
        frame = json.loads((await ws.receive(timeout=10)).data)
        assert isinstance(frame, dict) and frame["reply_to"] == "one"  # alone: a plain object
        conn = lobby.hub.connections()[0]
        for i in range(10):  # queued in one go: the writer sends them as one frame
            conn.send(ChatMessage(sender_id=1, sender_name="Bard", content=f"b{i}"))
        frame = json.loads((await ws.receive(timeout=10)).data)
        assert isinstance(frame, list)
        assert [m["content"] for m in frame] == [f"b{i}" for i in range(10)]


async def test_a_character_is_played_by_one_session_at_a_time(
    lobby: MasterServer,
    player: Player,
    make_client: Callable[[], ApiClient],
    http: aiohttp.ClientSession,
) -> None:
    first, hero = await player("alice")
    second = make_client()
    await second.login("alice")
    async with http.ws_connect(ws_url(lobby.url), headers=first.headers()) as ws:
        inbox = aiohttp_inbox(ws)
        await second.select(hero["id"])
        err = await inbox.next_type("error")
        assert err["error_code"] == "conflict" and err["details"]["character_id"] == hero["id"]
        await ws.send_str(json.dumps({"type": "chat", "content": "me?"}))
        assert (await inbox.next_type("error"))["error_code"] == "no_character"
    presences = [p for p in lobby.hub.presences() if p.character_id == hero["id"]]
    assert presences == []  # the second session has not connected yet
    assert (await lobby.ctx.sessions.authenticate(first.token)).character_id is None
