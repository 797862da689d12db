"""The client learns its public address by STUN at select, and paired peers punch it.

Loopback stands in for a NAT: Bob advertises a host address where nothing
answers, so only the server-reflexive address the lobby's STUN responder saw
(his node's real socket) reaches him. Alice, paired with him by location, gets
both candidates and dials both; the learned one connects.
"""

from __future__ import annotations

import asyncio

import pytest

from mesh import NetworkClient
from mesh.client.rendezvous import stun_server_address
from mesh.events import PeerConnected
from protocol.candidates import CandidateKind

from .conftest import ClientFactory

__all__: list[str] = []


async def _connected(client: NetworkClient, peer_id: str) -> PeerConnected:
    node = client.node
    assert node is not None
    async for event in node.peer_events():
        if isinstance(event, PeerConnected) and event.identity.peer_id == peer_id:
            return event
    raise AssertionError("the node closed before the peer connected")


async def test_paired_peer_is_punched_at_its_stun_learned_address(
    make_client: ClientFactory, dead_endpoint: str
) -> None:
    bob = await make_client("Bob", p2p_advertise=[dead_endpoint], p2p_learn_reflexive=True)
    assert bob.node is not None
    learned = await asyncio.wait_for(bob.candidates_learned(), 20)
    assert [(c.kind, c.endpoint) for c in learned] == [
        (CandidateKind.HOST, dead_endpoint),
        (CandidateKind.SRFLX, bob.node.endpoint),
    ]
    alice = await make_client("Alice")
    # Alice's own address is her host candidate: nothing more to register
    assert [c.kind for c in await asyncio.wait_for(alice.candidates_learned(), 20)] == [
        CandidateKind.HOST
    ]
    entry = alice.peers.peer_candidates(bob.character.id if bob.character else 0)
    assert entry is not None and entry.direct_addresses() == [
        ("127.0.0.1", int(dead_endpoint.rsplit(":", 1)[1])),
        bob.node.address,
    ]
    connected = await asyncio.wait_for(_connected(alice, bob.node.peer_id), 20)
    link = alice.node.core.link_info(bob.node.peer_id) if alice.node else None
    assert link is not None and link.address == bob.node.address
    assert connected.identity.character_name == "Bob"
    assert (await alice.send_whisper("Bob", "found you")).path == "direct"
    assert (await bob.send_whisper("Alice", "so you did")).path == "direct"


async def test_an_explicit_advertise_is_all_a_client_publishes(
    make_client: ClientFactory, dead_endpoint: str
) -> None:
    carol = await make_client("Carol", p2p_advertise=[dead_endpoint])
    assert [c.endpoint for c in await carol.candidates_learned()] == [dead_endpoint]


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("stun:100.64.0.10:8888", ("100.64.0.10", 8888)),
        ("stun:lobby.example", ("lobby.example", 3478)),
        ("stun:[2001:db8::1]:3479", ("2001:db8::1", 3479)),
        ("turn:198.51.100.4:3478?transport=udp", ("198.51.100.4", 3478)),
        ("stun:host:0", None),
        ("stun:host:port", None),
        ("stun:[2001:db8::1", None),
        ("http://lobby:8888", None),
        ("stun:", None),
    ],
)
def test_stun_server_address(url: str, address: tuple[str, int] | None) -> None:
    assert stun_server_address(url) == address
