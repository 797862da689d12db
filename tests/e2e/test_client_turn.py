"""Clients that no direct path connects reach each other over the operator's TURN server.

A real lobby on loopback names a real coturn (``turn_urls``, ``turn_secret``) and
issues time-limited credentials for it. Both clients advertise an endpoint that never
answers, so no direct path opens (as behind NATs no punch gets through).
``turn_after`` seconds after the lobby paired them, each allocates a relayed
address with the lobby's credentials, registers it, and dials the other's: the
whispers both ways and movement travel over TURN, both ends say
``"turn"``, and the lobby relayed nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lobby import MasterServer
from mesh import MessageType, NetworkClient, ReconnectPolicy
from tests.e2e.deployments import OneProcess
from tests.lobby.support import fast_settings
from tests.mesh.coturn import COTURN_MISSING, LoopbackTurn

from .conftest import Inbox, fast_mesh, relayed

__all__: list[str] = []

pytestmark = pytest.mark.skipif(COTURN_MISSING, reason="coturn (`turnserver`) is not installed")


@pytest.fixture
async def turn_lobby(tmp_path: Path) -> AsyncIterator[MasterServer]:
    async with LoopbackTurn(tmp_path / "turn") as turn:
        host, port = turn.address
        settings = fast_settings(
            tmp_path / "lobby-data",
            turn_urls=[f"turn:{host}:{port}?transport=udp"],
            turn_secret=turn.secret,
        )
        async with MasterServer(settings=settings) as server:
            yield server


async def _client(server: MasterServer, name: str, seed: int, dead: str) -> NetworkClient:
    client = NetworkClient(
        server.url,
        p2p_port=0,
        p2p_advertise=[dead],
        mesh_config=fast_mesh(turn_after=0.5),
        reconnect=ReconnectPolicy(initial_delay=0.05, max_delay=0.5, seed=seed),
    )
    await client.connect(f"user_{name.lower()}", "password123", register=True)
    character = await client.create_character(name, "Crimson Covenant", "Warrior")
    await client.select_character(int(character["id"]))
    return client


async def _connected(client: NetworkClient, character_id: int) -> None:
    node = client.node
    assert node is not None
    events = Inbox()
    node.add_peer_listener(events)
    if node.movement_available(character_id):
        return
    await events.wait_until(lambda _: node.movement_available(character_id))


async def test_unpunchable_clients_talk_and_move_over_turn(
    turn_lobby: MasterServer, dead_endpoint: str
) -> None:
    ann = await _client(turn_lobby, "Ann", 1, dead_endpoint)
    ben = await _client(turn_lobby, "Ben", 2, dead_endpoint)
    try:
        ann_id, ben_id = int(ann.character["id"]), int(ben.character["id"])  # type: ignore[index]
        await _connected(ann, ben_id)
        await _connected(ben, ann_id)
        whispers_ann, whispers_ben, moves = Inbox(), Inbox(), Inbox()
        ann.register_handler(MessageType.WHISPER, whispers_ann)
        ben.register_handler(MessageType.WHISPER, whispers_ben)
        ben.register_handler(MessageType.POSITION_UPDATE, moves)
        assert (await ann.send_whisper(ben_id, "over the relay server")).path == "turn"
        assert (await ben.send_whisper(ann_id, "and back")).path == "turn"
        assert [m.content for m in await whispers_ben.wait_for(1)] == ["over the relay server"]
        assert [m.content for m in await whispers_ann.wait_for(1)] == ["and back"]
        for step in range(50):  # bounded: until Ben has seen one
            await ann.send_position_update({"x": float(step), "y": 2.0, "z": 0.0})
            if moves.items:
                break
            await asyncio.sleep(0.05)  # a movement tick passes between sends
        assert (await moves.wait_for(1))[0].character_id == ann_id
        quality = ann.connection_quality(ben_id)
        assert quality is not None and quality.path == "turn"
        # the relayed address was registered, the credentials were the lobby's
        assert ann.peers.turn.registered and ann.peers.turn.registered[0].kind == "relay"
        assert await relayed(OneProcess(turn_lobby)) == 0
    finally:
        for client in (ann, ben):
            await client.disconnect()
