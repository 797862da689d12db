"""A peer the lobby names by a relayed (TURN) candidate only: never a direct endpoint.

A relayed address is the TURN path's, reached with ``path="turn"``; the node must never
keep it as the address to redial the peer's direct path at, or a later reliable message
dials the relay as if it were the peer and reports ``"direct"`` for a relayed path. The
relayed address here is the peer's own socket (a TURN server's relayed address forwards
to it just the same), so whatever dials it connects and the path it is dialled on shows.
"""

from __future__ import annotations

from mesh import NetworkClient
from protocol.candidates import CandidateKind, endpoint_candidate

from .conftest import ClientFactory, Inbox

__all__: list[str] = []


async def _linked(client: NetworkClient, character_id: int) -> None:
    node = client.node
    assert node is not None
    events = Inbox()
    node.add_peer_listener(events)
    if not node.movement_available(character_id):
        await events.wait_until(lambda _: node.movement_available(character_id))


async def test_a_relayed_candidate_is_never_redialled_as_the_direct_path(
    make_client: ClientFactory,
) -> None:
    # Ann publishes no host address, only a relayed one; she dials nobody herself
    ann = await make_client("Ann", p2p_advertise=[], p2p_auto_connect=False)
    assert ann.node is not None
    await ann.peers.add_candidates([endpoint_candidate(ann.node.endpoint, CandidateKind.RELAY)])
    ben = await make_client("Ben")
    ann_id = int(ann.character["id"])  # type: ignore[index]
    assert ben.node is not None

    await _linked(ben, ann_id)  # Ben dialled her relayed candidate, on the TURN path
    quality = ben.connection_quality(ann_id)
    assert quality is not None and quality.path == "turn"
    assert (await ben.send_whisper(ann_id, "through the relay")).path == "turn"

    # that link gone, the next whisper has no direct endpoint to dial: the lobby relays it
    assert ben.node.disconnect_peer(ann_id)
    assert (await ben.send_whisper(ann_id, "after the link")).path == "relay"
