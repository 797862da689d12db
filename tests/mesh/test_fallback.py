"""Dial timeouts, PeerUnreachableError, the relay fallback, and area-of-interest limits."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator

import pytest

from mesh.core import MeshConfig
from mesh.node import PeerNode
from protocol.errors import PeerUnreachableError
from protocol.messages.base import MessageType
from tests.inbox import Inbox

from .conftest import NodeFactory, ticket_of


@pytest.fixture
def silent_endpoint() -> Iterator[tuple[str, int]]:
    """A bound UDP port that never answers (a peer behind a dropping firewall)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()
    finally:
        sock.close()


class LoopbackRelay:
    """The lobby relay in miniature: forwards opaque envelopes, records what it saw."""

    def __init__(self) -> None:
        self.nodes: dict[int, PeerNode] = {}
        self.seen: list[bytes] = []

    async def send(self, target_character_id: int, data: bytes) -> None:
        self.seen.append(data)
        self.nodes[target_character_id].receive_relayed(data)


async def relayed_pair(
    make_node: NodeFactory,
    relay: LoopbackRelay,
    config: MeshConfig,
    names: tuple[str, str] = ("Alice", "Bob"),
) -> tuple[PeerNode, PeerNode]:
    """Characters 1 and 2 on two nodes, each sending through ``relay``, which knows both."""
    a = await make_node(1, names[0], config=config, relay=relay)
    b = await make_node(2, names[1], config=config, relay=relay)
    relay.nodes = {1: a, 2: b}
    return a, b


def fast() -> MeshConfig:
    return MeshConfig(dial_timeout=0.5, send_timeout=10.0, relay_resend_interval=0.5)


async def test_dial_to_silent_peer_times_out(
    make_node: NodeFactory, silent_endpoint: tuple[str, int]
) -> None:
    a = await make_node(1, "A", config=fast())
    b = await make_node(2, "B")
    with pytest.raises(PeerUnreachableError):
        await a.connect(ticket_of(b), silent_endpoint)


async def test_whisper_without_path_or_relay_raises(
    make_node: NodeFactory, silent_endpoint: tuple[str, int]
) -> None:
    a = await make_node(1, "A", config=fast())
    b = await make_node(2, "B")
    with pytest.raises(PeerUnreachableError):
        await a.send_whisper(2, "nobody knows you")
    a.add_peer(ticket_of(b), silent_endpoint)
    with pytest.raises(PeerUnreachableError):
        await a.send_whisper(2, "you cannot be reached")


async def test_whisper_falls_back_to_sealed_relay(
    make_node: NodeFactory, silent_endpoint: tuple[str, int]
) -> None:
    relay = LoopbackRelay()
    a, b = await relayed_pair(make_node, relay, fast())
    whispers, parties = Inbox(), Inbox()
    b.register_handler(MessageType.WHISPER, whispers)
    b.register_handler(MessageType.PARTY_CHAT, parties)
    a.add_peer(ticket_of(b), silent_endpoint)  # the directory names an endpoint nobody answers
    secret = "the password is swordfish"
    result = await a.send_whisper(2, secret)
    assert result.path == "relay"
    party = await a.send_party_chat([2], "party via relay")
    assert party.paths == {2: "relay"}
    for i in range(5):
        await a.send_whisper(2, f"more {i}")
    msg = (await whispers.wait_for(1))[0]
    assert msg.content == secret and msg.sender_id == 1 and msg.sender_name == "Alice"
    items = await whispers.wait_for(6)
    assert [m.content for m in items[1:]] == [f"more {i}" for i in range(5)]
    assert (await parties.wait_for(1))[0].content == "party via relay"
    assert relay.seen
    for envelope in relay.seen:
        assert b"swordfish" not in envelope and b"party via relay" not in envelope
    assert b.peer_id not in a.peers


async def test_relay_replay_is_not_delivered_twice(
    make_node: NodeFactory, silent_endpoint: tuple[str, int]
) -> None:
    relay = LoopbackRelay()
    a, b = await relayed_pair(make_node, relay, fast(), ("A", "B"))
    whispers = Inbox()
    b.register_handler(MessageType.WHISPER, whispers)
    a.add_peer(ticket_of(b), silent_endpoint)
    await a.send_whisper(2, "once")
    for envelope in list(relay.seen):
        b.receive_relayed(envelope)  # a malicious relay replays everything
        b.receive_relayed(envelope[:-1] + bytes([envelope[-1] ^ 1]))  # and tampers
    await a.send_whisper(2, "twice")
    items = await whispers.wait_for(2)
    assert [m.content for m in items] == ["once", "twice"]
    assert b.stats["bad_relay"] >= 1


async def test_max_connections_prefers_same_location(make_node: NodeFactory) -> None:
    hub = await make_node(1, "Hub", max_connections=2)
    hub.set_location(7)
    others = [await make_node(2 + i, f"P{i}") for i in range(3)]
    left = Inbox()
    hub.register_handler(MessageType.PLAYER_LEFT_AREA, left)
    await hub.connect(ticket_of(others[0]), others[0].endpoint)
    hub.set_peer_location(2, 7)
    await hub.connect(ticket_of(others[1]), others[1].endpoint)
    hub.set_peer_location(3, 99)
    await hub.connect(ticket_of(others[2]), others[2].endpoint)
    hub.set_peer_location(4, 7)
    (gone,) = await left.wait_for(1)
    assert gone.character_id == 3
    assert {p.character_id for p in hub.peers.values()} == {2, 4}


async def test_send_position_while_alone_is_harmless(
    make_node: NodeFactory, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await make_node(1, "A")
    core = a.core
    # A spy on the core's timer entry point (the node calls it when a tick is due).
    timer_ran = asyncio.Event()
    handle_timer = core.handle_timer

    def spy(now: float) -> None:
        handle_timer(now)
        timer_ran.set()

    monkeypatch.setattr(core, "handle_timer", spy)
    caplog.set_level(logging.DEBUG, logger="mesh")
    sent = [
        a.send_position_update({"x": float(i), "y": 0.0, "z": 0.0}, location_id=1)
        for i in range(10)
    ]
    assert [u.seq for u in sent] == sorted({u.seq for u in sent})  # seq increments each time

    async def drained() -> None:
        while (info := core.movement_info()).queued or info.next_tick is not None:
            timer_ran.clear()
            await timer_ran.wait()

    await asyncio.wait_for(drained(), timeout=10)
    info = core.movement_info()
    assert info.ticks >= 1  # the queued update went out on a real tick, to nobody
    assert info.latest == (sent[-1],)  # newest wins
    assert info.dropped == 0 and not info.owed
    assert core.location_id == 1
    assert all(count == 0 for count in a.stats.values()), dict(a.stats)
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not problems, [r.getMessage() for r in problems]
    assert a.peers == {}


async def test_peer_leaving_the_area_is_disconnected_and_announced(make_node: NodeFactory) -> None:
    hub = await make_node(1, "Hub")
    walker = await make_node(2, "Walker")
    left = Inbox()
    hub.register_handler(MessageType.PLAYER_LEFT_AREA, left)
    hub.set_location(7)
    await hub.connect(ticket_of(walker), walker.endpoint)
    seen = Inbox()
    hub.register_handler(MessageType.POSITION_UPDATE, seen)
    walker.send_position_update((0.0, 0.0, 0.0), location_id=7)  # walker is here...
    await seen.wait_for(1)
    walker.send_position_update((1.0, 0.0, 0.0), location_id=8)  # ...and walks away
    (msg,) = await left.wait_for(1)
    assert (msg.character_id, msg.location_id, msg.to_location_id) == (2, 7, 8)
    assert walker.peer_id not in hub.peers
    inbox = Inbox()
    walker.register_handler(MessageType.WHISPER, inbox)
    result = await hub.send_whisper(2, "come back")  # reconnects on demand
    assert result.path == "direct"
    assert (await inbox.wait_for(1))[0].content == "come back"
