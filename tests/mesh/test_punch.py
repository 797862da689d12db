"""PeerNode.punch: dial every candidate of a peer, the first authenticated link wins (loopback)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from mesh.config import MeshConfig
from mesh.link import LinkState
from mesh.node import PeerNode
from protocol.errors import PeerUnreachableError
from tests.mesh.conftest import NodeFactory, ticket_of

__all__: list[str] = []


@pytest.fixture
def silent() -> Iterator[tuple[str, int]]:
    """A bound UDP address that never answers: a candidate behind a NAT that drops."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()
    sock.close()


def _handshaking(node: PeerNode) -> list[object]:
    return [info for info in node.core.links() if info.state is LinkState.HANDSHAKING]


async def test_the_address_that_answers_wins_and_spare_dials_close(
    make_node: NodeFactory, silent: tuple[str, int]
) -> None:
    # a dial timeout far beyond the test: a spare dial left open would still be handshaking
    config = MeshConfig(dial_timeout=60.0)
    a, b = await make_node(config=config), await make_node(config=config)
    peer = await a.punch(ticket_of(b), [silent, b.address, silent])
    assert peer.peer_id == b.peer_id
    info = a.core.link_info(b.peer_id)
    assert info is not None and info.address == b.address and info.outbound
    # the dial to the silent address was answered by nothing: closed once b connected
    assert _handshaking(a) == []
    assert (await a.send_whisper(b.peer_id, "through the punched path")).path == "direct"


async def test_both_sides_punching_at_once_keep_one_connection(make_node: NodeFactory) -> None:
    a, b = await make_node(), await make_node()
    await asyncio.gather(a.punch(ticket_of(b), [b.address]), b.punch(ticket_of(a), [a.address]))
    for sender, receiver in ((a, b), (b, a)):
        assert (await sender.send_whisper(receiver.peer_id, "hi")).path == "direct"
    # the simultaneous-dial tie-break: both sides keep the same connection
    link_a, link_b = a.core.link_info(b.peer_id), b.core.link_info(a.peer_id)
    assert link_a is not None and link_b is not None
    assert link_a.outbound != link_b.outbound


async def test_a_linked_peer_is_not_punched_again(make_node: NodeFactory) -> None:
    a, b = await make_node(), await make_node()
    await a.connect(ticket_of(b), b.endpoint)
    before = len(a.core.links())
    assert (await a.punch(ticket_of(b), [b.address])).peer_id == b.peer_id
    assert len(a.core.links()) == before


async def test_no_answer_anywhere_fails_like_a_dial(
    make_node: NodeFactory, silent: tuple[str, int]
) -> None:
    a, b = await make_node(config=MeshConfig(dial_timeout=0.5)), await make_node()
    with pytest.raises(PeerUnreachableError):
        await a.punch(ticket_of(b), [silent])
    with pytest.raises(PeerUnreachableError):
        await a.punch(ticket_of(b), [])
