"""Bad WebSocket input gets the documented answer; the other client keeps working."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from websockets.asyncio.client import connect as ws_connect

from lobby import MasterServer
from tests.lobby.support import (
    ApiClient,
    FakeClock,
    aiohttp_inbox,
    close_code,
    fast_settings,
    websockets_inbox,
    ws_url,
)

Player = Callable[..., Awaitable[tuple[ApiClient, dict[str, Any]]]]


async def _other_still_works(ws: Any, inbox: Any, text: str) -> None:
    await ws.send(json.dumps({"type": "chat", "content": text}))
    got = await inbox.next_type("chat")
    assert got["content"] == text


async def test_invalid_json_unknown_type_oversize_each_get_an_error(
    lobby: MasterServer, player: Player, http: aiohttp.ClientSession
) -> None:
    alice, _ = await player("alice")
    bob, _ = await player("bob", "Azure Syndicate")
    url = ws_url(lobby.url)
    async with (
        http.ws_connect(url, headers=alice.headers()) as ws_a,
        ws_connect(url, additional_headers=bob.headers()) as ws_b,
    ):
        a, b = aiohttp_inbox(ws_a), websockets_inbox(ws_b)

        await ws_a.send_str("{not json")
        assert (await a.next_type("error"))["error_code"] == "invalid_json"
        await _other_still_works(ws_b, b, "after invalid json")

        await ws_a.send_str(json.dumps({"type": "teleport", "message_id": "t1"}))
        assert (await a.next_type("error"))["error_code"] == "unknown_type"
        await _other_still_works(ws_b, b, "after unknown type")

        await ws_a.send_str(json.dumps({"type": "chat"}))  # known type, missing content
        assert (await a.next_type("error"))["error_code"] == "invalid_message"

        big = json.dumps({"type": "chat", "content": "x" * (lobby.settings.ws_max_message_size)})
        await ws_a.send_str(big)
        err = await a.next_type("error")
        assert err["error_code"] == "message_too_large"
        assert err["details"]["limit"] == lobby.settings.ws_max_message_size
        await _other_still_works(ws_b, b, "after oversize")

        await ws_a.send_bytes(b"\x00\x01")
        assert (await a.next_type("error"))["error_code"] == "invalid_message"

        # a type the lobby does not route (whispers go peer to peer)
        await ws_a.send_str(json.dumps({"type": "whisper", "content": "psst", "target_id": 2}))
        assert (await a.next_type("error"))["error_code"] == "bad_request"

        # Alice's connection is still up after all of it
        await ws_a.send_str(json.dumps({"type": "heartbeat", "message_id": "hb1"}))
        assert (await a.next_type("heartbeat"))["reply_to"] == "hb1"
        await _other_still_works(ws_b, a, "alice sees bob")


async def test_frame_over_hard_limit_closes_1009(
    lobby: MasterServer, player: Player, http: aiohttp.ClientSession
) -> None:
    alice, _ = await player("alice")
    bob, _ = await player("bob")
    url = ws_url(lobby.url)
    async with (
        http.ws_connect(url, headers=alice.headers()) as ws_a,
        http.ws_connect(url, headers=bob.headers()) as ws_b,
    ):
        await ws_a.send_str("x" * (lobby.settings.ws_hard_max_message_size + 1))
        assert await close_code(ws_a) == 1009
        b = aiohttp_inbox(ws_b)
        await ws_b.send_str(json.dumps({"type": "chat", "content": "still here"}))
        assert (await b.next_type("chat"))["content"] == "still here"


async def test_flood_gets_rate_limited_then_closed(
    tmp_path: Path, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    settings = fast_settings(tmp_path / "d", ws_message_burst=5, ws_flood_strikes=3)
    async with MasterServer(settings=settings, clock=clock) as server:
        flooder, calm = ApiClient(server.url, http), ApiClient(server.url, http)
        for client, name in ((flooder, "flooder"), (calm, "calm")):
            await client.sign_up(name)
        url = ws_url(server.url)
        async with (
            http.ws_connect(url, headers=flooder.headers()) as ws_f,
            ws_connect(url, additional_headers=calm.headers()) as ws_c,
        ):
            f, c = aiohttp_inbox(ws_f), websockets_inbox(ws_c)
            heartbeat = json.dumps({"type": "heartbeat"})
            for _ in range(5):  # the burst; the fake clock never refills it
                await ws_f.send_str(heartbeat)
            for _ in range(5):
                await f.next_type("heartbeat")
            for _ in range(settings.ws_flood_strikes):
                await ws_f.send_str(heartbeat)
                err = await f.next_type("error")
                assert err["error_code"] == "rate_limited"
                assert err["details"]["retry_after"] > 0
            await ws_f.send_str(heartbeat)  # the flood continues: cut off
            assert await close_code(ws_f) == 1008
            await ws_c.send(json.dumps({"type": "heartbeat", "message_id": "calm1"}))
            assert (await c.next_type("heartbeat"))["reply_to"] == "calm1"
