"""Clients talk peer to peer: whisper, movement and nearby players, with 2 and 5 clients.

The lobby introduces peers (PEER_INFO) and counts every envelope it relays:
on loopback every whisper must take the direct path, so the count stays 0.
"""

from __future__ import annotations

import asyncio

from mesh import MessageType, NearbyPlayer

from .conftest import ClientFactory, Deployment, Inbox, relayed

__all__: list[str] = []


async def test_two_clients_whisper_direct(
    deployment: Deployment, make_client: ClientFactory
) -> None:
    alice = await make_client("Alice")
    bob = await make_client("Bob")
    whispers, awaited = Inbox(), asyncio.Event()

    async def async_handler(message: object) -> None:
        await asyncio.sleep(0)
        awaited.set()

    bob.register_handler(MessageType.WHISPER, whispers)
    bob.register_handler(MessageType.WHISPER, async_handler)  # sync and async handlers alike
    result = await alice.send_whisper("Bob", "meet me at the gate")
    assert result.path == "direct"
    reply = await bob.send_whisper(int(alice.character["id"]), "on my way")  # type: ignore[index]
    assert reply.path == "direct"
    (msg,) = await whispers.wait_for(1)
    assert msg.content == "meet me at the gate"
    assert msg.sender_name == "Alice" and msg.sender_id == alice.character["id"]  # type: ignore[index]
    await asyncio.wait_for(awaited.wait(), 10)
    assert await relayed(deployment) == 0


def names(players: list[NearbyPlayer]) -> set[str]:
    return {p.character_name for p in players}


async def test_movement_newest_wins_and_nearby_players(make_client: ClientFactory) -> None:
    alice = await make_client("Alice")
    bob = await make_client("Bob")
    await alice.send_whisper("Bob", "connecting")  # opens the direct connection
    positions = Inbox()
    bob.register_handler(MessageType.POSITION_UPDATE, positions)
    last = 40
    for i in range(1, last + 1):
        await alice.send_position_update(
            {"x": float(i), "y": 2.0, "z": 0.5}, velocity={"x": 1.0, "y": 0.0, "z": 0.0}
        )
        if i % 10 == 0:
            await asyncio.sleep(0.06)  # let a movement tick pass (bounded generator)
    items = await positions.wait_until(lambda xs: any(u.position.x == float(last) for u in xs))
    seqs = [u.seq for u in items]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # never older, never twice
    assert all(u.character_id == alice.character["id"] for u in items)  # type: ignore[index]
    (seen,) = [p for p in bob.get_nearby_players() if p.character_name == "Alice"]
    assert seen.position is not None and seen.position.x == float(last)
    assert seen.velocity is not None and seen.velocity.x == 1.0
    assert seen.faction == "Crimson Covenant" and seen.last_seen > 0
    assert seen.level is None or seen.level >= 1


async def test_nearby_players_follow_moves(make_client: ClientFactory) -> None:
    alice = await make_client("Alice")
    bob = await make_client("Bob", faction="Azure Syndicate")
    left, joined = Inbox(), Inbox()
    bob.register_handler(MessageType.PLAYER_LEFT_AREA, left)
    alice.register_handler(MessageType.PLAYER_JOINED_AREA, joined)
    await bob.send_whisper("Alice", "hi")  # Bob learnt of Alice from PEER_INFO
    assert "Alice" in names(bob.get_nearby_players(1))
    moved = await alice.send_move(2, 1)
    assert moved["location_id"] == moved.location_id == 2 and moved.previous_location_id == 1
    await left.wait_for(1)
    assert "Alice" not in names(bob.get_nearby_players(1))
    assert alice.get_nearby_players() == [] and alice.character["location_id"] == 2  # type: ignore[index]
    introductions = Inbox()
    bob.register_handler(MessageType.PEER_INFO, introductions)
    await bob.send_move(2, 1)
    (msg,) = await joined.wait_for(1)
    assert msg.character_name == "Bob" and msg.location_id == 2
    assert "Bob" in names(alice.get_nearby_players(2))
    # Alice's PEER_INFO at the new location (on a cluster, from her process a moment later)
    await introductions.wait_until(
        lambda xs: any(m.character_name == "Alice" and m.location_id == 2 for m in xs)
    )
    assert "Alice" in names(bob.get_nearby_players())
    bob_view = {p.character_name: p for p in bob.get_nearby_players(2)}
    assert bob_view["Alice"].location_id == 2


async def test_ticket_renewal_keeps_the_mesh_working(make_client: ClientFactory) -> None:
    alice = await make_client("Alice")
    old = alice.ticket
    assert alice.ticket_renewal_scheduled()  # at 80 % of the ticket's lifetime
    await alice.renew_ticket()  # what the timer runs
    assert alice.ticket is not None and alice.ticket != old
    assert alice.ticket_renewal_scheduled()  # and the next renewal is scheduled
    bob = await make_client("Bob")  # a new peer handshakes with the renewed ticket
    assert (await bob.send_whisper("Alice", "fresh ticket?")).path == "direct"
