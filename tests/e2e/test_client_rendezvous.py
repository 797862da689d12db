"""The client's side of the lobby's rendezvous: paired peers' candidates, our own, ICE servers.

Alice and Bob stand apart: the lobby pairs them only when Alice whispers Bob
(``POST /api/peers/{id}/pair``); then both clients hold each other's candidates
under one pairing id, and the whisper goes direct. Candidates the node learns
later (server-reflexive, relayed) reach the peers it is paired with.
"""

from __future__ import annotations

from typing import Any, cast

from mesh import MessageType, NetworkClient
from protocol.candidates import Candidate, CandidateKind, candidate_priority
from protocol.messages.peer import PeerInfoMessage
from protocol.rest import IceServersOut

from .conftest import ClientFactory, Deployment, Inbox, relayed
from .deployments import OneProcess

__all__: list[str] = []


def peer_infos(client: NetworkClient) -> Inbox:
    """Every PEER_INFO ``client`` handles from now on (its candidates are taken by then)."""
    inbox = Inbox()
    client.register_handler(MessageType.PEER_INFO, inbox)
    return inbox


async def about(inbox: Inbox, character_id: int, **match: object) -> PeerInfoMessage:
    """The first PEER_INFO of ``character_id`` in ``inbox`` matching ``match`` (waits)."""

    def find(items: list[Any]) -> PeerInfoMessage | None:
        for m in items:
            if m.character_id == character_id and all(getattr(m, k) == v for k, v in match.items()):
                return cast(PeerInfoMessage, m)
        return None

    return cast(PeerInfoMessage, find(await inbox.wait_until(lambda xs: find(xs) is not None)))


def cid(client: NetworkClient) -> int:
    assert client.character is not None
    return int(client.character["id"])


async def test_a_whisper_pairs_two_distant_players_both_at_once(
    deployment: Deployment, make_client: ClientFactory
) -> None:
    bob = await make_client("Bob")
    await bob.send_move(2, 1)
    bob_hears = peer_infos(bob)
    alice = await make_client("Alice")
    # apart: neither holds the other's addresses
    assert alice.peers.peer_candidates(cid(bob)) is None
    assert bob.peers.peer_candidates(cid(alice)) is None

    result = await alice.send_whisper("Bob", "psst")
    assert result.path == "direct"
    mine = alice.peers.peer_candidates(cid(bob))
    assert mine is not None and mine.pairing == "whisper" and mine.pairing_id
    assert bob.node is not None and [c.endpoint for c in mine.candidates] == [bob.node.endpoint]
    await about(bob_hears, cid(alice), pairing_id=mine.pairing_id)
    theirs = bob.peers.peer_candidates(cid(alice))
    assert theirs is not None and theirs.pairing_id == mine.pairing_id
    assert alice.node is not None
    assert [c.endpoint for c in theirs.candidates] == [alice.node.endpoint]
    assert await relayed(deployment) == 0


async def test_learned_candidates_reach_paired_peers(make_client: ClientFactory) -> None:
    alice = await make_client("Alice")
    bob_hears = Inbox()
    bob = await make_client("Bob", select=False)
    bob.register_handler(MessageType.PEER_INFO, bob_hears)
    hero = await bob.create_character("Bob", "Crimson Covenant", "Warrior")
    await bob.select_character(int(hero["id"]))
    await about(bob_hears, cid(alice), pairing="location")
    srflx = Candidate(
        kind=CandidateKind.SRFLX,
        address="198.51.100.20",
        port=62000,
        priority=candidate_priority(CandidateKind.SRFLX),
    )
    await alice.peers.add_candidates([srflx])
    assert [c.kind for c in alice.peers.local.all] == ["host", "srflx"]
    update = await about(bob_hears, cid(alice), candidates=alice.peers.local.all)
    entry = bob.peers.peer_candidates(cid(alice))
    assert entry is not None and srflx in entry.candidates
    assert entry.pairing_id == update.pairing_id
    # moving away: the lobby unpairs, the client forgets Alice's addresses
    await bob.send_move(2, 1)
    assert bob.peers.peer_candidates(cid(alice)) is None


async def test_ice_servers_name_the_lobbys_stun_and_are_cached(
    deployment: Deployment, make_client: ClientFactory
) -> None:
    alice = await make_client("Alice")
    ice = await alice.get_ice_servers()
    assert isinstance(ice, IceServersOut)
    (stun,) = ice.stun_urls
    host, port = stun.removeprefix("stun:").rsplit(":", 1)
    assert host == "127.0.0.1"  # the host the client reached the lobby at
    if isinstance(deployment, OneProcess):  # (each process of a cluster has a STUN port)
        assert int(port) == deployment.server.stun_port
    assert ice.turn_urls == [] and ice.username is None
    assert await alice.peers.ice_servers() is ice  # nothing to expire: no second request
    assert await alice.peers.ice_servers(refresh=True) is not ice
