"""WebSocket chat against a real lobby: two client libraries, right recipients only."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import websockets
from websockets.asyncio.client import connect as ws_connect

from lobby import MasterServer
from tests.lobby.support import ApiClient, aiohttp_inbox, websockets_inbox, ws_url

Player = Callable[..., Awaitable[tuple[ApiClient, dict[str, Any]]]]


def chat(content: str, msg_type: str = "chat", **extra: Any) -> str:
    return json.dumps({"type": msg_type, "content": content, **extra})


async def test_chat_and_faction_chat_reach_the_right_recipients(
    lobby: MasterServer, player: Player, http: aiohttp.ClientSession
) -> None:
    alice, a_char = await player("alice", "Crimson Covenant")
    bob, b_char = await player("bob", "Azure Syndicate")
    carol, _ = await player("carol", "Crimson Covenant")
    url = ws_url(lobby.url)
    async with (
        http.ws_connect(url, headers=alice.headers()) as ws_a,
        ws_connect(url, additional_headers=bob.headers()) as ws_b,
        http.ws_connect(f"{url}?token={carol.token}") as ws_c,
    ):
        a, b, c = aiohttp_inbox(ws_a), websockets_inbox(ws_b), aiohttp_inbox(ws_c)
        # the client's sender fields are ignored: the lobby sets them from the session
        await ws_a.send_str(chat("hello all", sender_id=999, sender_name="Mallory"))
        for inbox in (a, b, c):
            got = await inbox.next_type("chat")
            assert got["content"] == "hello all"
            assert (got["sender_id"], got["sender_name"]) == (a_char["id"], a_char["name"])
            assert got["channel"] == "global" and got["timestamp"] is not None

        await ws_a.send_str(chat("crimson only", "faction_chat", faction="Azure Syndicate"))
        got = await c.next_type("faction_chat")
        assert got["content"] == "crimson only" and got["faction"] == "Crimson Covenant"
        await a.next_type("faction_chat")
        # Bob is told nothing: the next chat-like message he gets is his own marker.
        await ws_b.send(chat("marker", "faction_chat"))
        got = await b.next(lambda m: m["type"] in ("chat", "faction_chat"))
        assert got["content"] == "marker" and got["sender_id"] == b_char["id"]
        assert all(m.get("content") != "crimson only" for m in b.seen)
        # ... and Bob's faction chat does not reach the Crimson players either
        await ws_a.send_str(chat("after"))
        got = await c.next(lambda m: m["type"] in ("chat", "faction_chat"))
        assert got["content"] == "after"


async def test_without_character_receive_but_not_chat(
    lobby: MasterServer,
    player: Player,
    make_client: Callable[[], ApiClient],
    http: aiohttp.ClientSession,
) -> None:
    alice, _ = await player("alice")
    lurker = make_client()
    await lurker.sign_up("lurker")
    url = ws_url(lobby.url)
    async with (
        http.ws_connect(url, headers=alice.headers()) as ws_a,
        http.ws_connect(url, headers=lurker.headers()) as ws_l,
    ):
        a, lk = aiohttp_inbox(ws_a), aiohttp_inbox(ws_l)
        await ws_l.send_str(chat("hi", message_id="m1"))
        err = await lk.next_type("error")
        assert err["error_code"] == "no_character" and err["ref_id"] == "m1"
        await ws_a.send_str(chat("welcome"))
        assert (await lk.next_type("chat"))["content"] == "welcome"
        await a.next_type("chat")


async def test_world_announcement_admin_only(
    tmp_path: Any, clock: Any, http: aiohttp.ClientSession
) -> None:
    from tests.lobby.support import fast_settings

    settings = fast_settings(tmp_path / "d", admin_accounts=["Root"])
    async with MasterServer(settings=settings, clock=clock) as server:
        admin, user = ApiClient(server.url, http), ApiClient(server.url, http)
        await admin.sign_up("root")
        await user.sign_up("user")
        url = ws_url(server.url)
        async with (
            http.ws_connect(url, headers=admin.headers()) as ws_admin,
            http.ws_connect(url, headers=user.headers()) as ws_user,
        ):
            adm, usr = aiohttp_inbox(ws_admin), aiohttp_inbox(ws_user)
            await ws_user.send_str(chat("I am the king", "world_announcement"))
            assert (await usr.next_type("error"))["error_code"] == "forbidden"
            await ws_admin.send_str(chat("Aetherfall soon", "world_announcement"))
            for inbox in (adm, usr):
                got = await inbox.next_type("world_announcement")
                assert got["content"] == "Aetherfall soon" and got["sender_name"] == "root"


async def test_chat_limits(
    lobby: MasterServer, player: Player, http: aiohttp.ClientSession
) -> None:
    alice, _ = await player("alice")
    async with http.ws_connect(ws_url(lobby.url), headers=alice.headers()) as ws:
        inbox = aiohttp_inbox(ws)
        await ws.send_str(chat("x" * (lobby.settings.chat_max_length + 1)))
        err = await inbox.next_type("error")
        assert err["error_code"] == "validation_error" and err["details"]["limit"] == 500
        await ws.send_str(chat("   "))
        assert (await inbox.next_type("error"))["error_code"] == "validation_error"
        # the fake clock stands still: the burst is all there is
        for i in range(int(lobby.settings.chat_burst)):
            await ws.send_str(chat(f"m{i}"))
            await inbox.next_type("chat")
        await ws.send_str(chat("one too many"))
        err = await inbox.next_type("error")
        assert err["error_code"] == "rate_limited" and err["details"]["retry_after"] > 0


@pytest.mark.parametrize("how", ["none", "garbage", "query-garbage"])
async def test_ws_refuses_without_valid_session(lobby: MasterServer, how: str) -> None:
    url = ws_url(lobby.url)
    headers = {"Authorization": "Bearer nope"} if how == "garbage" else {}
    if how == "query-garbage":
        url += "?token=nope"
    with pytest.raises(websockets.InvalidStatus) as info:
        async with ws_connect(url, additional_headers=headers):
            pass
    assert info.value.response.status_code == 401
    assert json.loads(info.value.response.body or b"{}")["code"] == "unauthorized"
