"""What the cheap WebSocket connect path must keep: upgrade checks, the idle timeout, pings.

The endpoint checks an upgrade's headers itself (aiohttp's handshake runs once, at
prepare), watches idleness with one timer for every socket, answers pings itself (so
that every frame counts as heard) and the lobby keeps its startup heap out of the
garbage collector's way while it runs.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import os
from pathlib import Path

import aiohttp
import pytest

from lobby import MasterServer
from tests.lobby.support import (
    FakeClock,
    aiohttp_inbox,
    close_code,
    fast_settings,
    signed_up,
    ws_url,
)

WAIT = 10.0


def _upgrade_headers(**changes: str) -> dict[str, str]:
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
    }
    headers.update(changes)
    return headers


@pytest.mark.parametrize(
    "changes",
    [
        {"Upgrade": "h2c"},
        {"Connection": "keep-alive"},
        {"Sec-WebSocket-Version": "12"},
        {"Sec-WebSocket-Key": "not base64!"},
        {"Sec-WebSocket-Key": base64.b64encode(b"fifteen bytes..").decode()[:-4]},
    ],
    ids=["upgrade", "connection", "version", "key-not-base64", "key-length"],
)
async def test_a_refused_upgrade_is_a_json_400_before_authentication(
    lobby: MasterServer, http: aiohttp.ClientSession, changes: dict[str, str]
) -> None:
    """No token at all: the upgrade's headers are judged first, as aiohttp's handshake would."""
    async with http.get(f"{lobby.url}/ws", headers=_upgrade_headers(**changes)) as resp:
        assert resp.status == 400
        assert (await resp.json())["code"] == "bad_request"


async def test_a_valid_upgrade_without_a_token_is_a_401(
    lobby: MasterServer, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{lobby.url}/ws", headers=_upgrade_headers()) as resp:
        assert resp.status == 401
        assert (await resp.json())["code"] == "unauthorized"


async def test_the_idle_timeout_closes_the_silent_socket_only(
    tmp_path: Path, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    """One timer watches every socket: it closes the silent one and keeps the talking one."""
    settings = fast_settings(tmp_path / "d", ws_idle_timeout=1.0)
    async with MasterServer(settings=settings, clock=clock) as server:
        quiet = await signed_up(server.url, http, "quiet")
        chatty = await signed_up(server.url, http, "chatty")
        async with (
            http.ws_connect(ws_url(server.url), headers=quiet.headers()) as q,
            http.ws_connect(ws_url(server.url), headers=chatty.headers()) as c,
        ):
            quiet_closed = asyncio.ensure_future(close_code(q, wait=WAIT))
            inbox = aiohttp_inbox(c)
            for i in range(200):  # bounded: the quiet one goes after about ten of these
                await c.send_str(json.dumps({"type": "heartbeat", "message_id": f"c{i}"}))
                assert (await inbox.next_type("heartbeat"))["reply_to"] == f"c{i}"
                done, _ = await asyncio.wait({quiet_closed}, timeout=0.1)
                if done:
                    break
            assert await asyncio.wait_for(quiet_closed, WAIT) == 1000
            assert not c.closed
            await c.send_str(json.dumps({"type": "heartbeat", "message_id": "still"}))
            assert (await inbox.next_type("heartbeat"))["reply_to"] == "still"
            # now silent as well: closed in turn
            assert await close_code(c, wait=WAIT) == 1000


async def test_pings_are_answered_and_keep_the_socket_open(
    tmp_path: Path, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    """A client that only pings is heard: each ping gets its pong, the socket stays up."""
    settings = fast_settings(tmp_path / "d", ws_idle_timeout=1.0)
    async with MasterServer(settings=settings, clock=clock) as server:
        pinger = await signed_up(server.url, http, "pinger")
        async with http.ws_connect(
            ws_url(server.url), headers=pinger.headers(), autoping=False
        ) as ws:
            for i in range(15):  # 1.5 s of pings, past the 1 s idle timeout
                payload = f"p{i}".encode()
                await ws.ping(payload)
                msg = await ws.receive(timeout=WAIT)
                assert msg.type == aiohttp.WSMsgType.PONG and msg.data == payload
                await asyncio.sleep(0.1)  # the pace of a pinging client, not a wait for an event
            assert not ws.closed
            msg = await ws.receive(timeout=WAIT)  # silent now: the lobby gives up
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1000


async def test_a_running_lobby_freezes_its_startup_heap(tmp_path: Path, clock: FakeClock) -> None:
    """What start() built is out of every collection while the lobby runs, back after."""
    gc.unfreeze()
    async with MasterServer(settings=fast_settings(tmp_path / "d"), clock=clock):
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
