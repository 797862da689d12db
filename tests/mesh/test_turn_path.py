"""QUIC over a TURN allocation, a third path: real PeerNodes and a real coturn on loopback.

Node A allocates a relayed address on coturn (TURN REST credentials, as the
lobby issues them) and permits B's IP; B dials that address like any other
(``path="turn"``). Whispers and movement flow both ways over it, and both ends
say ``"turn"``. With a direct link beside it, a silent direct path moves the
peer to TURN, and back to direct when the direct path returns, with every
whisper delivered once and acknowledged (never a false failure); a direct path
dead past the QUIC idle timeout is dialled again, and carries the peers once it works.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mesh.config import MeshConfig
from mesh.events import PathChanged
from mesh.node import PeerNode
from mesh.paths import TurnRoute
from protocol.errors import PeerUnreachableError
from protocol.messages.base import MessageType
from tests.inbox import Inbox

from .conftest import NodeFactory, ticket_of
from .coturn import COTURN_MISSING, LoopbackTurn
from .udp_proxy import Faults, UdpProxy

pytestmark = pytest.mark.skipif(COTURN_MISSING, reason="coturn (`turnserver`) is not installed")

FAST_PATHS = MeshConfig(path_probe_interval=0.3, path_silence=1.0)


async def _over_turn(
    turn: LoopbackTurn, a: PeerNode, b: PeerNode, user: str = "a"
) -> tuple[str, int]:
    """A allocates and permits 127.0.0.1; B dials A's relayed address; returns it."""
    creds = turn.credentials(user)
    allocated = await a.allocate_turn(turn.address, creds.username, creds.password)
    relayed = (str(allocated.relayed[0]), int(allocated.relayed[1]))
    assert relayed[0] == "127.0.0.1" and relayed != turn.address
    assert a.turn_address == relayed
    a.permit_turn(["127.0.0.1"])
    identity = await b.connect(ticket_of(a), relayed, path="turn")
    assert identity.peer_id == a.peer_id
    return relayed


async def test_whispers_and_movement_both_ways_over_turn(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    async with LoopbackTurn(tmp_path) as turn:
        a, b = await make_node(1, "alice"), await make_node(2, "bob")
        relayed = await _over_turn(turn, a, b)
        whispers_a, whispers_b = Inbox(), Inbox()
        moves_a, moves_b = Inbox(), Inbox()
        a.register_handler(MessageType.WHISPER, whispers_a)
        b.register_handler(MessageType.WHISPER, whispers_b)
        a.register_handler(MessageType.POSITION_UPDATE, moves_a)
        b.register_handler(MessageType.POSITION_UPDATE, moves_b)

        assert (await b.send_whisper(1, "to alice")).path == "turn"
        assert (await a.send_whisper(2, "to bob")).path == "turn"
        assert [m.content for m in await whispers_a.wait_for(1)] == ["to alice"]
        assert [m.content for m in await whispers_b.wait_for(1)] == ["to bob"]

        b.send_position_update((1, 2, 3), location_id=7)
        a.send_position_update((4, 5, 6), location_id=7)
        assert (await moves_a.wait_for(1))[0].character_id == 2
        assert (await moves_b.wait_for(1))[0].character_id == 1

        seen_by_a, seen_by_b = a.connection_quality(2), b.connection_quality(1)
        assert seen_by_a is not None and seen_by_b is not None
        assert (seen_by_a.path, seen_by_b.path) == ("turn", "turn")
        # A reaches B through its own allocation; B sends to A's relayed address
        assert isinstance(seen_by_a.address, TurnRoute)
        assert seen_by_b.address == relayed
        assert seen_by_a.bytes_sent > 0 and seen_by_a.bytes_received > 0


async def test_an_unpermitted_peer_cannot_reach_us_through_the_relay(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    """Without a permission for B's IP, coturn drops what B sends to A's relayed address."""
    config = MeshConfig(dial_timeout=1.5)
    async with LoopbackTurn(tmp_path) as turn:
        a, b = await make_node(1, "alice"), await make_node(2, "bob", config=config)
        creds = turn.credentials("a")
        allocated = await a.allocate_turn(turn.address, creds.username, creds.password)
        relayed = (str(allocated.relayed[0]), int(allocated.relayed[1]))
        with pytest.raises(PeerUnreachableError):
            await b.connect(ticket_of(a), relayed, path="turn")


async def test_bad_credentials_fail_the_allocation(make_node: NodeFactory, tmp_path: Path) -> None:
    async with LoopbackTurn(tmp_path) as turn:
        a = await make_node(1, "alice")
        creds = turn.credentials("a")
        with pytest.raises(PeerUnreachableError, match="401"):
            await a.allocate_turn(turn.address, creds.username, "not-the-password")
        assert a.turn_state is None  # dropped: the next call allocates afresh


async def test_a_silent_direct_path_moves_to_turn_and_back(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    """B reaches A directly (through a cuttable proxy) and over TURN (a spare). Cutting
    the direct path moves both to TURN; restoring it moves them back. Each whisper
    arrives once, in order, acknowledged by the path that carried it."""
    async with LoopbackTurn(tmp_path) as turn:
        a = await make_node(1, "alice", config=FAST_PATHS)
        b = await make_node(2, "bob", config=FAST_PATHS)
        paths_a, paths_b, whispers = Inbox(), Inbox(), Inbox()
        a.add_path_listener(paths_a)
        b.add_path_listener(paths_b)
        a.register_handler(MessageType.WHISPER, whispers)
        faults = Faults(loss=0.0, duplicate=0.0, reorder=0.0, max_delay=0.0)
        async with UdpProxy(a.address, seed=1, faults=faults) as proxy:
            await b.connect(ticket_of(a), proxy.address)
            await _over_turn(turn, a, b)
            assert b.core.link_info(a.peer_id).path == "direct"  # type: ignore[union-attr]
            spare = b.core.spare_info(a.peer_id)
            assert spare is not None and spare.path == "turn"
            assert (await b.send_whisper(1, "w0")).path == "direct"

            faults.drop_to_target = faults.drop_to_client = True

            def moved_to(path: str, *, silent: bool = False) -> Callable[[list[Any]], bool]:
                return lambda items: any(
                    isinstance(e, PathChanged) and e.path == path and e.silent is silent
                    for e in items
                )

            await paths_b.wait_until(moved_to("turn"))
            await paths_a.wait_until(moved_to("turn"))
            assert (await b.send_whisper(1, "w1")).path == "turn"
            assert (await a.send_whisper(2, "back")).path == "turn"
            quality = b.connection_quality(1)
            assert quality is not None and quality.path == "turn"

            faults.drop_to_target = faults.drop_to_client = False
            await paths_b.wait_until(moved_to("direct"))
            await paths_a.wait_until(moved_to("direct"))
            assert (await b.send_whisper(1, "w2")).path == "direct"
            assert [m.content for m in await whispers.wait_for(3)] == ["w0", "w1", "w2"]
            # the peers never left: one PeerConnected each, no PeerDisconnected
            assert a.peers.keys() == {b.peer_id} and b.peers.keys() == {a.peer_id}


async def test_a_direct_path_dead_past_the_idle_timeout_is_dialled_again(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    """The direct path stays cut until its link ends (QUIC idle timeout) while TURN carries
    the peers; once it works again a new direct link is dialled and carries them."""
    config = MeshConfig(
        path_probe_interval=0.3,
        path_silence=1.0,
        idle_timeout=1.5,
        reconnect_interval=0.2,
        redial_backoff=1.0,
        dial_timeout=2.0,
    )
    async with LoopbackTurn(tmp_path) as turn:
        a = await make_node(1, "alice", config=config)
        b = await make_node(2, "bob", config=config)
        paths_b, whispers, redials = Inbox(), Inbox(), Inbox()
        b.add_path_listener(paths_b)
        a.register_handler(MessageType.WHISPER, whispers)
        faults = Faults(loss=0.0, duplicate=0.0, reorder=0.0, max_delay=0.0)
        async with UdpProxy(a.address, seed=2, faults=faults) as proxy:
            await b.connect(ticket_of(a), proxy.address)
            await _over_turn(turn, a, b)
            faults.drop_to_target = faults.drop_to_client = True
            await paths_b.wait_until(lambda items: any(e.path == "turn" for e in items))
            # a QUIC Initial from either side through the cut proxy: the direct link ended
            # and its peer dials it again
            proxy.watch = lambda data, _inbound: redials(data) if data[0] & 0xF0 == 0xC0 else None
            await redials.wait_for(1)
            assert b.core.has_path(a.peer_id, "turn") and not b.core.has_path(a.peer_id, "direct")
            assert (await b.send_whisper(1, "over turn")).path == "turn"

            faults.drop_to_target = faults.drop_to_client = False
            await paths_b.wait_until(lambda items: items[-1].path == "direct")
            assert (await b.send_whisper(1, "direct again")).path == "direct"
            assert [m.content for m in await whispers.wait_for(2)] == ["over turn", "direct again"]
            assert a.peers.keys() == {b.peer_id} and b.peers.keys() == {a.peer_id}
