"""A flood of garbage QUIC Initials does not keep honest peers out (virtual time, then sockets)."""

from __future__ import annotations

import asyncio
import random

from bench.handshake_flood import InitialFlood, garbage_initial
from mesh.config import MeshConfig
from mesh.events import DialFailed
from mesh.link import LinkState
from mesh.node import PeerNode

from .conftest import NodeFactory, ticket_of
from .sim import SimNet, SimNode

RATE = 1000.0

HANDSHAKING = (LinkState.HANDSHAKING, LinkState.REJECTED)  # links holding a handshake slot


def _flood(
    net: SimNet, victim: SimNode, rng: random.Random, seconds: float, source: object
) -> list[int]:
    """Schedule ``RATE`` garbage Initials a second at ``victim`` for ``seconds`` of virtual time,
    each from ``source(rng)``; returns a list that gets the victim's handshaking connection
    count after each."""
    held: list[int] = []
    start = net.now

    def arrive() -> None:
        data = garbage_initial(rng.randbytes(8), rng.randbytes(8))
        net._deliver(victim, data, source(rng))  # type: ignore[operator]
        held.append(sum(1 for link in victim.core.links() if link.state in HANDSHAKING))

    for i in range(int(RATE * seconds)):
        net._at(start + i / RATE, arrive)
    return held


def _dial_through(net: SimNet, honest: SimNode, victim: SimNode) -> None:
    dial = net.connect(honest, victim)
    net.run_until(
        lambda: (
            net.connected(honest, victim)
            or any(isinstance(e, DialFailed) and e.dial_id == dial for e in honest.events)
        ),
        limit=20.0,
    )
    failed = [e for e in honest.events if isinstance(e, DialFailed)]
    assert net.connected(honest, victim), f"the honest dial failed: {failed}"


def test_spoofed_flood_takes_few_slots_and_an_honest_peer_connects() -> None:
    net = SimNet(41)
    victim, honest = net.add(1), net.add(2)
    config = victim.core.config
    rng = random.Random(7)
    held = _flood(
        net,
        victim,
        rng,
        8.0,
        lambda r: (f"10.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}", 4433),
    )
    net.run_for(0.5)  # the flood is on: its first Initials took what they could
    _dial_through(net, honest, victim)
    net.run_for(6.0)  # past a dial_timeout: the garbage admitted early has timed out
    stats = victim.core.gate.stats
    assert stats["gate_retries"] > 5000
    assert stats["gate_admitted_after_retry"] == 1  # the honest peer, through the Retry
    # garbage never holds more than the Retry threshold; the honest peer fits beside it
    assert max(held) <= config.retry_threshold + 1
    assert max(held) < config.max_handshakes
    assert victim.core.peers.keys() == {honest.core.identity.peer_id}


def test_a_flood_in_the_honest_peers_name_does_not_lock_it_out() -> None:
    """Forged Initials from the honest peer's own address only make it answer a Retry."""
    net = SimNet(42)
    victim, honest = net.add(1), net.add(2)
    rng = random.Random(8)
    _flood(net, victim, rng, 8.0, lambda r: (honest.addr[0], r.randrange(1024, 65536)))
    net.run_for(0.5)
    _dial_through(net, honest, victim)
    stats = victim.core.gate.stats
    assert stats["gate_admitted_after_retry"] == 1
    assert stats["gate_refused_source_limit"] == 0


def test_always_retry_connects_peers_both_ways() -> None:
    net = SimNet(43, config=lambda: MeshConfig(retry_threshold=0))
    a, b = net.add(1), net.add(2)
    net.establish(a, b)
    net.run_for(1.0)
    c = net.add(3)
    net.establish(b, c)
    assert b.core.gate.stats["gate_admitted_after_retry"] == 1
    assert c.core.gate.stats["gate_admitted_after_retry"] == 1


async def test_an_honest_peer_connects_during_a_real_initial_flood(
    make_node: NodeFactory,
) -> None:
    victim = await make_node(1, "Victim")
    honest = await make_node(2, "Honest")
    # bounded: RATE a second for at most 20 s, stopped as soon as the peer is in
    flood = InitialFlood(victim.address, rate=RATE, duration=20.0)
    flood.start()
    try:
        assert await asyncio.to_thread(flood.wait_sent, 300, 10.0), "the flood did not start"
        peer = await asyncio.wait_for(honest.connect(ticket_of(victim), victim.endpoint), 30.0)
    finally:
        flood.stop()
        await asyncio.to_thread(flood.join, 10.0)
    assert peer.peer_id == victim.peer_id
    assert honest.peer_id in victim.peers
    assert victim.stats["gate_retries"] > 0
    await _still_connected(victim, honest)


async def _still_connected(victim: PeerNode, honest: PeerNode) -> None:
    result = await asyncio.wait_for(honest.send_whisper(1, "through the flood"), 15.0)
    assert result.path == "direct"


def test_peers_behind_one_address_all_connect_a_few_at_a_time() -> None:
    """Per-source limits count handshakes in progress: a crowd behind one NAT gets in."""
    net = SimNet(44, config=lambda: MeshConfig(retry_threshold=0, max_handshakes_per_source=2))
    victim = net.add(1)
    crowd = [net.add(10 + i) for i in range(6)]
    for i, node in enumerate(crowd):  # one public address, a port each
        del net.nodes[node.addr]
        node.addr = ("198.51.100.7", 20000 + i)
        net.nodes[node.addr] = node
    for node in crowd:
        net.connect(node, victim)
    net.run_until(lambda: all(net.connected(node, victim) for node in crowd), limit=20.0)
    stats = victim.core.gate.stats
    assert stats["gate_admitted_after_retry"] >= len(crowd)
    assert stats["gate_refused_source_limit"] > 0  # the limit did hold some back for a while
    assert not any(isinstance(e, DialFailed) for node in crowd for e in node.events)
