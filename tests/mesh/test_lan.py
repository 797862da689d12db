"""LAN mode on loopback: three LanNodes (mDNS on 127.0.0.1 only) find each other and play."""

from __future__ import annotations

import asyncio
import io
import json
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from mesh.__main__ import execute
from mesh.discovery import LanNode, MdnsDiscovery, MemberJoined, MemberLeft, PeerIgnored
from mesh.discovery.lan import LanEvent
from mesh.terminal import Command, Output
from protocol.crypto import Identity, derive_group_key
from protocol.messages.base import MessageType
from protocol.version import PROTOCOL_VERSION
from tests.inbox import Inbox
from tests.mesh.discovery.guard import multicast_guard

__all__ = ["multicast_guard"]

pytestmark = pytest.mark.usefixtures("multicast_guard")

WAIT = 20.0


@pytest.fixture(scope="module")
def group_key() -> bytes:
    # one PBKDF2 run for the module; a fresh passphrase per run keeps parallel runs apart
    return derive_group_key(f"lan-test-{secrets.token_hex(8)}")


@pytest.fixture
async def lan_factory() -> AsyncIterator[Callable[..., LanNode]]:
    nodes: list[LanNode] = []

    def make(name: str, group_key: bytes, **kwargs: Any) -> LanNode:
        options: dict[str, Any] = {
            "name": name,
            "group_key": group_key,
            "interfaces": ["127.0.0.1"],
            "port": 0,
            "heartbeat": 0.5,
            "peer_timeout": 3.0,
            "dial_grace": 0.5,
            "retry_interval": 1.0,
        }
        options.update(kwargs)
        node = LanNode(**options)
        nodes.append(node)
        return node

    yield make
    await asyncio.gather(*(node.close() for node in nodes))


async def test_three_nodes_find_each_other_and_play(
    lan_factory: Callable[..., LanNode], group_key: bytes
) -> None:
    nodes = [lan_factory(name, group_key) for name in ("Aria", "Borin", "Cael")]
    await asyncio.gather(*(node.start() for node in nodes))
    await asyncio.gather(*(node.wait_for_members(2, timeout=WAIT) for node in nodes))
    aria, borin, cael = nodes
    for node in nodes:
        assert set(node.members) == {n.peer_id for n in nodes if n is not node}
        assert {m.character_name for m in node.members.values()} == {
            n.name for n in nodes if n is not node
        }

    inboxes = {node.name: {kind: Inbox() for kind in MessageType} for node in nodes}
    for node in nodes:
        for kind in (MessageType.WHISPER, MessageType.PARTY_CHAT, MessageType.POSITION_UPDATE):
            node.register_handler(kind, inboxes[node.name][kind])

    # whisper: only the target gets it, with the authenticated sender
    result = await aria.send_whisper("borin", "meet me at the shard")
    assert result.path == "direct"
    (whisper,) = await inboxes["Borin"][MessageType.WHISPER].wait_until(lambda i: len(i) >= 1)
    assert (whisper.content, whisper.sender_name, whisper.sender_id) == (
        "meet me at the shard",
        "Aria",
        aria.character_id,
    )

    # party chat: everyone else, once each
    party = await cael.send_party_chat("regroup at the gate")
    assert set(party.paths) == {aria.peer_id, borin.peer_id} and not party.failed
    for name in ("Aria", "Borin"):
        (msg,) = await inboxes[name][MessageType.PARTY_CHAT].wait_until(lambda i: len(i) >= 1)
        assert (msg.content, msg.sender_name) == ("regroup at the gate", "Cael")

    # movement: newest wins; the others see where Borin went
    for step in range(1, 4):
        borin.send_position_update((float(step), 2.0, 3.0))

    def arrived(items: list[Any]) -> bool:
        return any(u.position.x == 3.0 for u in items)

    for name in ("Aria", "Cael"):
        updates = await inboxes[name][MessageType.POSITION_UPDATE].wait_until(arrived)
        assert all(u.character_id == borin.character_id for u in updates)
        assert aria.sender_of(updates[-1].character_id) is not None

    assert inboxes["Cael"][MessageType.WHISPER].items == []
    assert inboxes["Aria"][MessageType.WHISPER].items == []
    assert inboxes["Cael"][MessageType.PARTY_CHAT].items == []


async def test_wrong_passphrase_is_found_but_never_admitted(
    lan_factory: Callable[..., LanNode], group_key: bytes
) -> None:
    aria = lan_factory("Aria", group_key)
    borin = lan_factory("Borin", group_key)
    stranger = lan_factory(
        "Stranger", derive_group_key(f"not the passphrase {secrets.token_hex(4)}")
    )
    events = Inbox()
    aria.add_listener(events)
    await asyncio.gather(aria.start(), borin.start(), stranger.start())
    await aria.wait_for_members(1, timeout=WAIT)

    def ignored(items: list[LanEvent]) -> bool:
        return any(isinstance(e, PeerIgnored) and e.peer_id == stranger.peer_id for e in items)

    await events.wait_until(ignored)
    assert stranger.peer_id in aria.found
    assert aria.ignored[stranger.peer_id].reason == "another LAN group"
    assert stranger.peer_id not in aria.members
    assert stranger.members == {}
    # the stranger's own dials (it sees us as "another group") never happen either
    assert not any(
        isinstance(e, MemberJoined) and e.identity.peer_id == stranger.peer_id for e in events.items
    )


async def test_copied_group_tag_without_the_key_fails_the_handshake(
    lan_factory: Callable[..., LanNode], group_key: bytes
) -> None:
    aria = lan_factory("Aria", group_key)
    mallory = lan_factory("Mallory", derive_group_key(f"a guess {secrets.token_hex(4)}"))
    mallory.auth.group_tag = aria.group_tag  # advertise and claim our group, without the key
    events = Inbox()
    aria.add_listener(events)
    mallory_events = Inbox()
    mallory.add_listener(mallory_events)
    await asyncio.gather(aria.start(), mallory.start())

    def rejected(items: list[LanEvent]) -> bool:
        return any(
            isinstance(e, PeerIgnored) and e.reason.startswith("handshake failed") for e in items
        )

    # whoever dials first sees the handshake fail; neither side ever admits the other
    done, _ = await asyncio.wait(
        [
            asyncio.ensure_future(events.wait_until(rejected)),
            asyncio.ensure_future(mallory_events.wait_until(rejected)),
        ],
        timeout=WAIT,
        return_when=asyncio.FIRST_COMPLETED,
    )
    assert done
    for task in done:
        task.result()
    assert aria.members == {} and mallory.members == {}
    assert mallory.peer_id not in aria.node.peers


async def test_a_node_that_closes_is_noticed_as_gone(
    lan_factory: Callable[..., LanNode], group_key: bytes
) -> None:
    aria, borin = lan_factory("Aria", group_key), lan_factory("Borin", group_key)
    events = Inbox()
    aria.add_listener(events)
    await asyncio.gather(aria.start(), borin.start())
    await aria.wait_for_members(1, timeout=WAIT)
    await borin.close()

    def left(items: list[LanEvent]) -> bool:
        return any(isinstance(e, MemberLeft) and e.identity.peer_id == borin.peer_id for e in items)

    await events.wait_until(left)
    assert borin.peer_id not in aria.members
    assert borin.peer_id not in aria.found


async def test_a_peer_of_another_protocol_version_is_ignored(
    lan_factory: Callable[..., LanNode], group_key: bytes
) -> None:
    aria = lan_factory("Aria", group_key)
    events = Inbox()
    aria.add_listener(events)
    future = MdnsDiscovery(
        peer_id=secrets.token_hex(16),
        name="FromTheFuture",
        port=4242,
        group_tag=aria.group_tag,
        version="2.0",
        interfaces=["127.0.0.1"],
        heartbeat=0.5,
    )
    await aria.start()
    async with future:

        def ignored(items: list[LanEvent]) -> bool:
            return any(isinstance(e, PeerIgnored) and e.peer_id == future.peer_id for e in items)

        await events.wait_until(ignored)
        assert aria.ignored[future.peer_id].reason == f"protocol 2.0 (ours is {PROTOCOL_VERSION})"
        assert future.peer_id in aria.found
    assert aria.members == {}
    assert not any(isinstance(e, MemberJoined) for e in events.items)


def _handshake_failed(peer_id: str) -> Callable[[list[LanEvent]], bool]:
    return lambda items: any(
        isinstance(e, PeerIgnored)
        and e.peer_id == peer_id
        and e.reason.startswith("handshake failed")
        for e in items
    )


async def test_an_impostor_with_a_members_id_does_not_lock_the_member_out(
    lan_factory: Callable[..., LanNode], group_key: bytes
) -> None:
    low, high = sorted((Identity.generate(), Identity.generate()), key=lambda i: i.peer_id)
    aria = lan_factory("Aria", group_key, identity=low)
    # bria has the higher id and never dials first within the test: only aria's dial can join them
    bria = lan_factory("Bria", group_key, identity=high, dial_grace=600.0)
    mallory = lan_factory("Mallory", derive_group_key(f"a guess {secrets.token_hex(4)}"))
    events = Inbox()
    aria.add_listener(events)
    await mallory.start()
    impostor = MdnsDiscovery(
        peer_id=bria.peer_id,
        name="Bria",
        port=mallory.node.address[1],
        group_tag=aria.group_tag,
        interfaces=["127.0.0.1"],
        heartbeat=0.5,
    )
    async with impostor:
        await aria.start()
        await events.wait_until(_handshake_failed(bria.peer_id))
        await bria.start()  # the real member, on another port, while the impostor still advertises
        await aria.wait_for_members(1, timeout=WAIT)
        assert set(aria.members) == {bria.peer_id}
        assert bria.peer_id not in aria.ignored
        endpoints = set(aria.found[bria.peer_id].endpoints)
        assert {("127.0.0.1", bria.node.address[1]), ("127.0.0.1", mallory.node.address[1])} <= (
            endpoints
        )


async def test_an_off_subnet_address_is_never_dialled(
    lan_factory: Callable[..., LanNode], group_key: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    aria = lan_factory("Aria", group_key)
    mallory = lan_factory("Mallory", derive_group_key(f"a guess {secrets.token_hex(4)}"))
    events = Inbox()
    aria.add_listener(events)
    dialled: list[tuple[str, int]] = []
    connect = aria.node.connect

    async def spy(peer_id: str | None, endpoint: tuple[str, int]) -> Any:
        dialled.append(endpoint)
        return await connect(peer_id, endpoint)

    monkeypatch.setattr(aria.node, "connect", spy)
    await mallory.start()
    port = mallory.node.address[1]
    reflector = MdnsDiscovery(
        peer_id=secrets.token_hex(16),
        name="Reflector",
        port=port,
        group_tag=aria.group_tag,
        interfaces=["127.0.0.1"],
        advertise=["192.0.2.7", "127.0.0.1"],  # a third party's address, then ours
        heartbeat=0.5,
    )
    await aria.start()
    async with reflector:
        # it is dialled at the loopback address (and fails there): the third party never is
        await events.wait_until(_handshake_failed(reflector.peer_id))
        assert aria.found[reflector.peer_id].endpoints == (("127.0.0.1", port),)
    assert dialled
    assert all(host == "127.0.0.1" for host, _ in dialled)


async def test_quality_command_lists_the_connected_members(
    lan_factory: Callable[..., LanNode], group_key: bytes
) -> None:
    """``/quality`` of the LAN terminal peer: each member's path, RTT, bytes each way."""
    aria, borin = lan_factory("Aria", group_key), lan_factory("Borin", group_key)
    await asyncio.gather(aria.start(), borin.start())
    await asyncio.gather(*(n.wait_for_members(1, timeout=WAIT) for n in (aria, borin)))
    await aria.send_whisper("borin", "ping")
    stream = io.StringIO()
    assert await execute(aria, Command("quality"), Output(stream, as_json=True))
    (row,) = json.loads(stream.getvalue())["peers"]
    assert (row["name"], row["path"]) == ("Borin", "direct")
    assert row["bytes_sent"] > 0 and row["bytes_received"] > 0
