"""PeerNode connection events: listeners (sync and async) and the peer_events() iterator."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mesh.auth import LobbyTicketAuth
from mesh.events import PeerConnected, PeerDisconnected
from mesh.handshake import CloseCode
from mesh.node import PeerEvent, PeerNode
from protocol.crypto import Identity
from protocol.messages.base import MessageType
from tests.inbox import Inbox

from .conftest import FakeLobby, NodeFactory, ticket_of

WAIT = 10.0


def of(kind: type, items: list[Any]) -> list[Any]:
    return [e for e in items if isinstance(e, kind)]


async def test_inbound_and_outbound_connections_are_announced(make_node: NodeFactory) -> None:
    alice = await make_node(1, "Alice")
    bob = await make_node(2, "Bob")
    seen_a, seen_b = Inbox(), Inbox()
    alice.add_peer_listener(seen_a)
    bob.add_peer_listener(seen_b)
    await alice.connect(ticket_of(bob), bob.endpoint)
    (out,) = await seen_a.wait_until(lambda xs: len(xs) >= 1)
    (inb,) = await seen_b.wait_until(lambda xs: len(xs) >= 1)
    assert isinstance(out, PeerConnected) and isinstance(inb, PeerConnected)
    assert (out.identity.character_name, out.outbound) == ("Bob", True)
    assert (inb.identity.character_name, inb.outbound) == ("Alice", False)
    assert out.address == bob.address

    assert alice.disconnect_peer(2)
    gone_a = (await seen_a.wait_until(lambda xs: len(of(PeerDisconnected, xs)) >= 1))[-1]
    gone_b = (await seen_b.wait_until(lambda xs: len(of(PeerDisconnected, xs)) >= 1))[-1]
    assert gone_a.identity.character_id == 2 and gone_b.identity.character_id == 1
    assert gone_b.code == CloseCode.NORMAL and gone_b.reason
    assert len(seen_a.items) == 2 and len(seen_b.items) == 2


async def test_async_listener_and_remover(make_node: NodeFactory) -> None:
    alice = await make_node(1, "Alice")
    bob = await make_node(2, "Bob")
    awaited: asyncio.Queue[PeerEvent] = asyncio.Queue()

    async def async_listener(event: PeerEvent) -> None:
        await asyncio.sleep(0)
        awaited.put_nowait(event)

    removed = Inbox()
    bob.add_peer_listener(async_listener)
    remove = bob.add_peer_listener(removed)
    remove()
    remove()  # idempotent
    await alice.connect(ticket_of(bob), bob.endpoint)
    event = await asyncio.wait_for(awaited.get(), WAIT)
    assert isinstance(event, PeerConnected) and event.identity.character_id == 1
    await alice.close()
    event = await asyncio.wait_for(awaited.get(), WAIT)
    assert isinstance(event, PeerDisconnected) and event.identity.character_id == 1
    assert removed.items == []


async def test_a_failing_listener_does_not_stop_the_others(
    make_node: NodeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    alice = await make_node(1, "Alice")
    bob = await make_node(2, "Bob")

    def broken(event: PeerEvent) -> None:
        raise RuntimeError("listener bug")

    seen = Inbox()
    bob.add_peer_listener(broken)
    bob.add_peer_listener(seen)
    await alice.connect(ticket_of(bob), bob.endpoint)
    await seen.wait_until(lambda xs: len(xs) == 1)
    assert "peer listener" in caplog.text and "listener bug" in caplog.text
    assert alice.peer_id in bob.peers


async def test_simultaneous_dial_is_one_connection_event_per_side(
    make_node: NodeFactory,
) -> None:
    a = await make_node(1, "A")
    b = await make_node(2, "B")
    seen_a, seen_b = Inbox(), Inbox()
    a.add_peer_listener(seen_a)
    b.add_peer_listener(seen_b)
    await asyncio.gather(a.connect(ticket_of(b), b.endpoint), b.connect(ticket_of(a), a.endpoint))
    # both dials resolved; a whisper each way proves every connection change is settled
    inbox = Inbox()
    b.register_handler(MessageType.WHISPER, inbox)
    a.register_handler(MessageType.WHISPER, inbox)
    await a.send_whisper(2, "one")
    await b.send_whisper(1, "two")
    await inbox.wait_until(lambda xs: len(xs) == 2)
    assert [type(e) for e in seen_a.items] == [PeerConnected]
    assert [type(e) for e in seen_b.items] == [PeerConnected]


async def test_connection_event_comes_before_the_first_message(make_node: NodeFactory) -> None:
    alice = await make_node(1, "Alice")
    bob = await make_node(2, "Bob")
    log = Inbox()
    bob.add_peer_listener(log)
    bob.register_handler(MessageType.WHISPER, log)
    await alice.connect(ticket_of(bob), bob.endpoint)
    await alice.send_whisper(2, "first words")
    items = await log.wait_until(lambda xs: len(xs) >= 2)
    assert isinstance(items[0], PeerConnected) and items[1].content == "first words"


async def test_peer_events_replays_then_follows_then_ends(make_node: NodeFactory) -> None:
    hub = await make_node(1, "Hub")
    first = await make_node(2, "First")
    second = await make_node(3, "Second")
    await first.connect(ticket_of(hub), hub.endpoint)
    await asyncio.wait_for(_until_peers(hub, 1), WAIT)
    events = hub.peer_events()
    await second.connect(ticket_of(hub), hub.endpoint)
    await first.close()

    got: list[PeerEvent] = []

    async def collect() -> None:
        async for event in events:
            got.append(event)
            if len(got) == 3:
                await hub.close()  # ends the iterator after the last PeerDisconnected

    await asyncio.wait_for(collect(), WAIT)
    summary = [(type(e).__name__, e.identity.character_name) for e in got]
    assert summary[:3] == [
        ("PeerConnected", "First"),  # the replay of who was connected
        ("PeerConnected", "Second"),
        ("PeerDisconnected", "First"),
    ]
    assert summary[3:] == [("PeerDisconnected", "Second")]  # the node's own close
    assert [e async for e in hub.peer_events()] == []  # closed: ends at once


async def _until_peers(node: PeerNode, count: int) -> None:
    changed = asyncio.Event()
    remove = node.add_peer_listener(lambda _: changed.set())
    try:
        while len(node.peers) < count:
            changed.clear()
            await changed.wait()
    finally:
        remove()


async def test_peer_whose_ticket_expires_is_disconnected(
    make_node: NodeFactory, fake_lobby: FakeLobby
) -> None:
    alice = await make_node(1, "Alice")
    identity = Identity.generate()
    short = LobbyTicketAuth(fake_lobby.public_key, fake_lobby.ticket(identity, 2, "Brief", ttl=2.0))
    async with PeerNode(identity, host="127.0.0.1", port=0, auth=short) as brief:
        seen = Inbox()
        alice.add_peer_listener(seen)
        await alice.connect(ticket_of(brief), brief.endpoint)
        items = await seen.wait_until(lambda xs: len(of(PeerDisconnected, xs)) >= 1)
        (gone,) = of(PeerDisconnected, items)
        assert (gone.identity.character_name, gone.code) == ("Brief", CloseCode.TICKET_EXPIRED)
        assert brief.peer_id not in alice.peers
