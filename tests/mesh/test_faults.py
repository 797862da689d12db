"""Reliable chat through a lossy, reordering, duplicating network: exactly once, in order."""

from __future__ import annotations

import asyncio

import pytest

from mesh.core import MeshConfig
from protocol.messages.base import MessageType
from tests.inbox import Inbox

from .conftest import NodeFactory, ticket_of
from .udp_proxy import Faults, UdpProxy


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_chat_exactly_once_in_order_through_lossy_proxy(
    make_node: NodeFactory, seed: int
) -> None:
    config = MeshConfig(dial_timeout=20.0, send_timeout=40.0)
    a = await make_node(1, "Alice", config=config)
    b = await make_node(2, "Bob", config=MeshConfig(dial_timeout=20.0, send_timeout=40.0))
    at_b, at_a = Inbox(), Inbox()
    b.register_handler(MessageType.WHISPER, at_b)
    b.register_handler(MessageType.PARTY_CHAT, at_b)
    a.register_handler(MessageType.WHISPER, at_a)
    async with UdpProxy(b.address, seed=seed, faults=Faults(loss=0.2)) as proxy:
        await a.connect(ticket_of(b), proxy.address)
        count = 40
        # tasks start in creation order, so each side's sends are queued in this order
        whispers = [a.send_whisper(2, f"whisper {i}") for i in range(count)]
        replies = [b.send_whisper(1, f"reply {i}") for i in range(count)]
        results = await asyncio.wait_for(asyncio.gather(*whispers, *replies), 50.0)
        assert {r.path for r in results} == {"direct"}
        parties = [a.send_party_chat([2], f"party {i}") for i in range(count)]
        party_results = await asyncio.wait_for(asyncio.gather(*parties), 50.0)
        assert all(r.paths == {2: "direct"} for r in party_results)
        got_b = await at_b.wait_for(2 * count)
        got_a = await at_a.wait_for(count)
        expected_b = [f"whisper {i}" for i in range(count)] + [f"party {i}" for i in range(count)]
        assert [m.content for m in got_b] == expected_b
        assert [m.content for m in got_a] == [f"reply {i}" for i in range(count)]
        assert proxy.stats.dropped > 0 and proxy.stats.duplicated > 0 and proxy.stats.delayed > 0
        # nothing more arrives later (no duplicates delivered)
        await a.send_whisper(2, "fin")
        final = await at_b.wait_for(2 * count + 1)
        assert len(final) == 2 * count + 1 and final[-1].content == "fin"
