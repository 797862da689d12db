"""Lobby outages: the client reconnects with its session, peer connections survive.

* the lobby is stopped and restarted on the same port and data directory while
  two clients whisper peer to peer: whispers keep flowing directly during the
  outage, both clients resume with the same session token afterwards, and the
  relay saw nothing;
* the client's socket is cut (transport aborted): it reconnects inside the
  reconnect grace and the lobby resumes the presence silently;
* what was said while it was away reaches it once, in order, after it is back: it
  resumes from the last cursor it saw (on a cluster, on whichever process).
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from lobby import MasterServer
from mesh import MessageType
from protocol.errors import NotConnectedError
from tests.e2e.deployments import OneProcess
from tests.lobby.support import fast_settings

from .conftest import ClientFactory, Deployment, Inbox, relayed

__all__: list[str] = []


@pytest.mark.one_process(
    "stops and restarts the one lobby in place; a cluster's processes are drained and "
    "killed one at a time in tests/lobby/cluster/test_cluster_failover.py"
)
async def test_peers_survive_lobby_restart(
    master: MasterServer, make_client: ClientFactory
) -> None:
    alice = await make_client("Alice")
    bob = await make_client("Bob")
    whispers, chats, goodbyes = Inbox(), Inbox(), Inbox()
    bob.register_handler(MessageType.WHISPER, whispers)
    bob.register_handler(MessageType.CHAT, chats)
    alice.register_handler(MessageType.DISCONNECT, goodbyes)
    assert (await alice.send_whisper("Bob", "before")).path == "direct"
    token = alice.session.rest.token
    port, data_dir = master.port, master.settings.data_dir

    await master.stop()
    await goodbyes.wait_for(1)  # the lobby said it is shutting down
    await alice.wait_connection_state("reconnecting")
    assert not alice.connected
    with pytest.raises(NotConnectedError):
        await alice.send_chat("lobby, are you there?")
    during = await alice.send_whisper("Bob", "during the outage")
    assert during.path == "direct"

    settings = fast_settings(data_dir, port=port, chat_burst=1000.0, chat_rate=1000.0)
    async with MasterServer(settings=settings) as again:
        await alice.wait_connection_state("connected")
        await bob.wait_connection_state("connected")
        assert alice.session.rest.token == token  # same session, no new login
        assert alice.session.socket is not None and alice.session.socket.reconnects >= 1
        mid = await alice.send_chat("back again")
        await chats.wait_until(lambda items: any(m.message_id == mid for m in items))
        after = await alice.send_whisper("Bob", "after")
        assert after.path == "direct"
        items = await whispers.wait_for(3)
        assert [m.content for m in items] == ["before", "during the outage", "after"]
        assert await relayed(OneProcess(again)) == 0


async def test_dropped_socket_resumes_inside_grace(
    deployment: Deployment, make_client: ClientFactory
) -> None:
    alice = await make_client("Alice")
    bob = await make_client("Bob")
    left, chats = Inbox(), Inbox()
    bob.register_handler(MessageType.PLAYER_LEFT_AREA, left)
    bob.register_handler(MessageType.CHAT, chats)
    assert alice.session.socket is not None
    await alice.session.socket.drop()
    await alice.wait_connection_state("reconnecting")
    await alice.wait_connection_state("connected")
    assert alice.session.socket.reconnects == 1
    mid = await alice.send_chat("still here")
    await chats.wait_until(lambda items: any(m.message_id == mid for m in items))
    assert left.items == []  # resumed silently: nobody saw Alice leave
    assert {s["players_online"] for s in await deployment.statuses()} == {2}


async def test_what_was_said_while_away_arrives_once_after_the_resume(
    deployment: Deployment, make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await make_client("Alice")
    bob = await make_client("Bob")
    chats = Inbox()
    alice.register_handler(MessageType.CHAT, chats)
    first = await bob.send_chat("before")
    await chats.wait_until(lambda xs: any(m.message_id == first for m in xs))
    socket = alice.session.socket
    assert socket is not None and socket.cursor is not None
    # Alice's reconnection is held until Bob has spoken (a fault: a slow network)
    gate = asyncio.Event()
    connect = socket._connect

    async def held() -> aiohttp.ClientWebSocketResponse:
        await gate.wait()
        return await connect()

    monkeypatch.setattr(socket, "_connect", held)
    await socket.drop()
    await alice.wait_connection_state("reconnecting")
    for n in range(3):
        await bob.send_chat(f"away {n}")
    gate.set()
    await alice.wait_connection_state("connected")
    last = await bob.send_chat("after")
    items = await chats.wait_until(lambda xs: any(m.message_id == last for m in xs))
    assert [m.content for m in items] == ["before", "away 0", "away 1", "away 2", "after"]
    assert socket.gaps == 0


async def test_revoked_session_ends_reconnection(make_client: ClientFactory) -> None:
    alice = await make_client("Alice")
    bob = await make_client("Bob")
    goodbyes = Inbox()
    alice.register_handler(MessageType.DISCONNECT, goodbyes)
    await alice.session.rest.post("/api/auth/logout")  # the session is revoked elsewhere
    await alice.wait_connection_state("closed")  # the retry got 401: no more attempts
    await goodbyes.wait_until(lambda xs: any(m.reason == "lobby connection lost" for m in xs))
    with pytest.raises(NotConnectedError):
        await alice.send_chat("anyone?")
    assert (await alice.send_whisper(int(bob.character["id"]), "still peers")).path == "direct"  # type: ignore[index]
