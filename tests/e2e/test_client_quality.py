"""NetworkClient's connection quality per player: direct over loopback, relay when the
advertised endpoint is dead, nothing before a character is selected; and whether our
movement reaches a player (only over a QUIC path, never through the lobby relay)."""

from __future__ import annotations

from mesh import ConnectionQuality, NetworkClient, PeerDisconnected

from .conftest import ClientFactory, Inbox

__all__: list[str] = []


async def _direct_and_relayed(
    make_client: ClientFactory, dead_endpoint: str
) -> tuple[NetworkClient, NetworkClient, NetworkClient]:
    """Alice whispered to Bob directly and to Carol (a dead advertised endpoint) by the relay."""
    alice = await make_client("Alice")
    bob = await make_client("Bob")
    carol = await make_client("Carol", p2p_advertise=[dead_endpoint], p2p_auto_connect=False)
    assert (await alice.send_whisper("Bob", "direct")).path == "direct"
    assert (await alice.send_whisper("Carol", "relayed")).path == "relay"
    return alice, bob, carol


def _id(client: NetworkClient) -> int:
    assert client.character is not None
    return int(client.character["id"])


async def test_quality_of_direct_and_relayed_players(
    make_client: ClientFactory, dead_endpoint: str
) -> None:
    alice, bob, carol = await _direct_and_relayed(make_client, dead_endpoint)
    bob_id, carol_id = _id(bob), _id(carol)

    direct = alice.connection_quality(bob_id)
    assert isinstance(direct, ConnectionQuality)
    assert direct.path == "direct" and direct.character_name == "Bob"
    assert direct.rtt is not None and direct.bytes_sent > 0 and direct.bytes_received > 0
    by_name = alice.connection_quality("Bob")  # by name as well
    assert by_name is not None and by_name.peer_id == direct.peer_id
    relayed = alice.connection_quality("Carol")
    assert relayed is not None and relayed.path == "relay" and relayed.character_id == carol_id
    assert relayed.relay_bytes_sent > 0 and relayed.rtt is None
    every = alice.connection_qualities()
    assert set(every) == {bob_id, carol_id}
    assert every[bob_id].path == "direct" and every[carol_id].path == "relay"
    assert alice.connection_quality("Nobody") is None


async def test_no_quality_before_a_character_is_selected(make_client: ClientFactory) -> None:
    idle = await make_client("Idle", select=False)
    assert idle.connection_quality(1) is None
    assert idle.connection_qualities() == {}


async def test_movement_is_available_only_over_a_quic_path(
    make_client: ClientFactory, dead_endpoint: str
) -> None:
    alice, bob, carol = await _direct_and_relayed(make_client, dead_endpoint)
    bob_id, carol_id = _id(bob), _id(carol)

    assert alice.movement_available("Bob") and alice.movement_available(bob_id)
    assert bob.movement_available("Alice")
    # Carol is reached by the relay only: movement reaches her from no one, nor hers anyone
    assert not alice.movement_available("Carol") and not alice.movement_available(carol_id)
    assert not carol.movement_available("Alice") and not carol.movement_available("Bob")
    assert alice.node is not None and alice.node.movement_available(bob_id)
    assert not alice.node.movement_available(carol_id)
    sent = await alice.send_position_update((1.0, 2.0, 3.0))  # skips Carol, fails nothing
    assert sent.seq >= 1
    assert not alice.movement_available("Nobody") and not alice.movement_available(987654)

    # the direct link goes down: movement is unavailable with its PeerDisconnected
    gone = Inbox()
    alice.node.add_peer_listener(gone)
    assert alice.node.disconnect_peer(bob_id)
    await gone.wait_until(lambda events: any(isinstance(e, PeerDisconnected) for e in events))
    assert not alice.movement_available("Bob")


async def test_no_movement_before_a_character_is_selected(make_client: ClientFactory) -> None:
    idle = await make_client("Idle", select=False)
    assert not idle.movement_available(1) and not idle.movement_available("Alice")
