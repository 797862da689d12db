"""Two and five real PeerNodes on loopback: whisper, party chat, movement, departures."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest

from mesh.auth import LobbyTicketAuth
from mesh.link import LinkState
from mesh.node import PeerNode
from protocol.errors import NotConnectedError
from protocol.messages.base import MessageType
from protocol.messages.location import PositionUpdateMessage, Vec3
from protocol.movement import quantize_movement
from tests.inbox import Inbox

from .conftest import FakeLobby, NodeFactory, ticket_of

WAIT = 10.0


async def connect(a: PeerNode, b: PeerNode) -> None:
    await a.connect(ticket_of(b), b.endpoint)


async def test_whisper_between_two_nodes(make_node: NodeFactory) -> None:
    alice = await make_node(1, "Alice")
    bob = await make_node(2, "Bob")
    inbox = Inbox()
    bob.register_handler(MessageType.WHISPER, inbox)
    peer = await alice.connect(ticket_of(bob), bob.endpoint)
    assert peer.character_id == 2 and peer.character_name == "Bob"
    result = await alice.send_whisper(2, "hello bob")
    assert result.path == "direct"
    (msg,) = await inbox.wait_for(1)
    assert msg.content == "hello bob"
    assert msg.sender_id == 1 and msg.sender_name == "Alice"
    assert msg.message_id == result.message_id
    assert alice.peer_id in bob.peers


async def test_party_chat_reaches_every_member_once_in_order(make_node: NodeFactory) -> None:
    leader = await make_node(10, "Leader")
    members = [await make_node(11 + i, f"Member{i}") for i in range(2)]
    inboxes = []
    for member in members:
        inbox = Inbox()
        member.register_handler(MessageType.PARTY_CHAT, inbox)
        inboxes.append(inbox)
        await connect(leader, member)
    for i in range(20):
        result = await leader.send_party_chat([11, 12, 10], f"msg {i}", party_id="p1")
        assert result.paths == {11: "direct", 12: "direct"} and not result.failed
    for inbox in inboxes:
        items = await inbox.wait_for(20)
        assert [m.content for m in items] == [f"msg {i}" for i in range(20)]
        assert {(m.sender_id, m.sender_name, m.party_id) for m in items} == {(10, "Leader", "p1")}


async def test_async_and_sync_handlers(make_node: NodeFactory) -> None:
    a = await make_node(1, "A")
    b = await make_node(2, "B")
    sync_inbox = Inbox()
    got = asyncio.Event()

    async def async_handler(message: Any) -> None:
        await asyncio.sleep(0)
        got.set()

    b.register_handler(MessageType.WHISPER, sync_inbox)
    b.register_handler(MessageType.WHISPER, async_handler)
    await connect(a, b)
    await a.send_whisper(b.peer_id, "both")
    await sync_inbox.wait_for(1)
    await asyncio.wait_for(got.wait(), WAIT)


async def test_movement_newest_wins(make_node: NodeFactory) -> None:
    a = await make_node(1, "Runner")
    b = await make_node(2, "Watcher")
    inbox = Inbox()
    b.register_handler(MessageType.POSITION_UPDATE, inbox)
    await connect(a, b)
    last = None
    for i in range(200):
        last = a.send_position_update((float(i), 0.0, 1.0), (1.0, 0.0, 0.0), location_id=5)
        if i % 20 == 0:
            await asyncio.sleep(0)  # let ticks run while we keep producing
    assert last is not None

    async def until_last() -> None:
        while not inbox.items or inbox.items[-1].seq != last.seq:
            await inbox.wait_for(len(inbox.items) + 1)

    await asyncio.wait_for(until_last(), WAIT)
    seqs = [u.seq for u in inbox.items]
    assert seqs == sorted(set(seqs)), "delivered out of order or twice"
    assert len(seqs) < 200, "updates of one tick were not coalesced"
    final = inbox.items[-1]
    assert final.character_id == 1 and final.location_id == 5 and final.position.x == 199.0


async def test_position_handlers_get_the_update_past_a_failing_one(
    make_node: NodeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Every POSITION_UPDATE handler, sync or async, gets the sent update as a
    PositionUpdateMessage (float32-rounded), even after one that raised (logged)."""
    a = await make_node(1, "Runner")
    b = await make_node(2, "Watcher")
    sync_inbox, async_inbox = Inbox(), Inbox()

    def broken(message: Any) -> None:
        raise RuntimeError("game bug")

    async def async_handler(message: Any) -> None:
        await asyncio.sleep(0)
        async_inbox(message)

    for handler in (broken, sync_inbox, async_handler):
        b.register_handler(MessageType.POSITION_UPDATE, handler)
    await connect(a, b)
    sent = a.send_position_update((1.1, 2.0, -3.0), (0.25, 0.0, 0.1), location_id=5)
    assert type(sent) is PositionUpdateMessage and sent.character_id == 1
    assert sent.position == Vec3(x=1.1, y=2.0, z=-3.0) and sent.sent_at > 0
    (got,) = await sync_inbox.wait_for(1)
    (also,) = await async_inbox.wait_for(1)
    assert got is also and type(got) is PositionUpdateMessage
    assert got.model_dump(exclude={"message_id"}) == quantize_movement(sent).model_dump(
        exclude={"message_id"}
    )
    assert got.message_id != sent.message_id
    assert any("handler" in r.getMessage() and r.exc_info for r in caplog.records)


async def test_five_nodes_full_mesh(make_node: NodeFactory) -> None:
    nodes = [await make_node(100 + i, f"N{i}") for i in range(5)]
    inboxes = [Inbox() for _ in nodes]
    for node, inbox in zip(nodes, inboxes, strict=True):
        node.register_handler(MessageType.WHISPER, inbox)
    await asyncio.gather(*(connect(nodes[i], nodes[j]) for i in range(5) for j in range(i + 1, 5)))
    for node in nodes:
        assert len(node.peers) == 4
    sends = [
        nodes[i].send_whisper(100 + j, f"{i}->{j} #{k}")
        for k in range(3)
        for i in range(5)
        for j in range(5)
        if i != j
    ]
    results = await asyncio.gather(*sends)
    assert {r.path for r in results} == {"direct"}
    for j, inbox in enumerate(inboxes):
        items = await inbox.wait_for(12)
        for i in range(5):
            if i == j:
                continue
            from_i = [m.content for m in items if m.sender_id == 100 + i]
            assert from_i == [f"{i}->{j} #{k}" for k in range(3)]


async def test_simultaneous_dial_leaves_one_connection(make_node: NodeFactory) -> None:
    a = await make_node(1, "A")
    b = await make_node(2, "B")
    pa, pb = await asyncio.gather(connect(a, b), connect(b, a))
    del pa, pb
    assert list(a.peers) == [b.peer_id] and list(b.peers) == [a.peer_id]
    inbox = Inbox()
    b.register_handler(MessageType.WHISPER, inbox)
    for i in range(5):
        await a.send_whisper(2, f"w{i}")
    items = await inbox.wait_for(5)
    assert [m.content for m in items] == [f"w{i}" for i in range(5)]

    def live_links(node: PeerNode) -> int:
        open_states = (LinkState.HANDSHAKING, LinkState.ACTIVE)
        return sum(1 for link in node.core.links() if link.state in open_states)

    assert live_links(a) == 1 and live_links(b) == 1


async def test_peer_leaving_is_announced(make_node: NodeFactory) -> None:
    a = await make_node(1, "Stayer")
    b = await make_node(2, "Leaver")
    left = Inbox()
    a.register_handler(MessageType.PLAYER_LEFT_AREA, left)
    await connect(a, b)
    await b.close()
    (msg,) = await left.wait_for(1)
    assert msg.character_id == 2 and msg.character_name == "Leaver"
    assert b.peer_id not in a.peers


async def test_disconnect_peer_announces_on_both_sides(make_node: NodeFactory) -> None:
    a = await make_node(1, "A")
    b = await make_node(2, "B")
    left_a, left_b = Inbox(), Inbox()
    a.register_handler(MessageType.PLAYER_LEFT_AREA, left_a)
    b.register_handler(MessageType.PLAYER_LEFT_AREA, left_b)
    await connect(a, b)
    assert a.disconnect_peer(2)
    assert (await left_a.wait_for(1))[0].character_id == 2
    assert (await left_b.wait_for(1))[0].character_id == 1


async def test_one_socket_serves_accepted_and_dialled_connections(make_node: NodeFactory) -> None:
    a = await make_node(1, "A")
    b = await make_node(2, "B")
    c = await make_node(3, "C")
    await connect(a, b)  # b accepts
    await connect(b, c)  # b dials, from the same socket
    inbound = c.core.link_info(b.peer_id)
    assert inbound is not None and not inbound.outbound
    assert inbound.address == b.address
    assert {a.peer_id, c.peer_id} == set(b.peers)


async def test_dialling_the_wrong_peer_fails(make_node: NodeFactory) -> None:
    from protocol.errors import HandshakeError

    a = await make_node(1, "A")
    b = await make_node(2, "B")
    c = await make_node(3, "C")
    with pytest.raises(HandshakeError):
        await a.connect(ticket_of(b), c.endpoint)  # c answers at the address we were given
    assert a.peers == {}


async def test_a_wall_clock_step_reaches_the_core_offset(
    make_node: NodeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node sets the core's Unix-time offset only when it moved: a wall-clock step
    must still reach it (credential expiry is in Unix time)."""
    node = await make_node(1, "Clock")
    node.send_position_update((0.0, 0.0, 0.0), location_id=5)
    before = node.core.wall_offset
    loop = asyncio.get_running_loop()
    assert before == pytest.approx(time.time() - loop.time(), abs=0.5)
    stepped = SimpleNamespace(time=lambda: time.time() + 5.0)
    monkeypatch.setattr("mesh.node.time", stepped)  # the wall clock steps 5 s ahead
    node.send_position_update((1.0, 0.0, 0.0), location_id=5)
    assert node.core.wall_offset - before == pytest.approx(5.0, abs=0.5)


async def test_an_update_with_our_own_credential_expired_is_refused(
    make_node: NodeFactory, fake_lobby: FakeLobby
) -> None:
    """Our own ticket expired (the lobby did not renew it): a movement update raises
    NotConnectedError (one of the node's errors), not the credential check's own."""
    node = await make_node(1, "Late")
    node.send_position_update((0.0, 0.0, 0.0), location_id=5)
    expired = fake_lobby.ticket(node.identity, 1, "Late", now=time.time() - 7200, ttl=3600)
    auth = node.core.auth
    assert isinstance(auth, LobbyTicketAuth)
    auth.update_ticket(expired)
    with pytest.raises(NotConnectedError, match="own credential is not valid"):
        node.send_position_update((1.0, 0.0, 0.0), location_id=5)
