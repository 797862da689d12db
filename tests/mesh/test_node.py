"""Two and five real PeerNodes on loopback: whisper, party chat, movement, departures."""

from __future__ import annotations

import asyncio
from typing import Any

from mesh.node import PeerNode
from protocol.messages.base import MessageType

from .conftest import NodeFactory, ticket_of

WAIT = 10.0


class Inbox:
    """Collects handler calls; lets a test wait for a count."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = asyncio.Event()

    def __call__(self, message: Any) -> None:
        self.items.append(message)
        self._changed.set()

    async def wait_for(self, count: int, limit: float = WAIT) -> list[Any]:
        async def _wait() -> None:
            while len(self.items) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(_wait(), limit)
        return self.items


async def connect(a: PeerNode, b: PeerNode) -> None:
    await a.connect(ticket_of(b), b.endpoint)


async def test_whisper_between_two_nodes(make_node: NodeFactory) -> None:
    alice = await make_node(1, "Alice")
    bob = await make_node(2, "Bob")
    inbox = Inbox()
    bob.register_handler(MessageType.WHISPER, inbox)
    peer = await alice.connect(ticket_of(bob), bob.endpoint)
    assert peer.character_id == 2 and peer.character_name == "Bob"
    result = await alice.send_whisper(2, "hello bob")
    assert result.path == "direct"
    (msg,) = await inbox.wait_for(1)
    assert msg.content == "hello bob"
    assert msg.sender_id == 1 and msg.sender_name == "Alice"
    assert msg.message_id == result.message_id
    assert alice.peer_id in bob.peers
