"""NetworkClient returns each request's ACK as its typed model; a malformed ACK is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lobby import LobbyContext, MasterServer
from lobby.connection import Connection
from mesh import MessageType, NetworkClient
from protocol.acks import MoveAck, ShardCaptureAck
from protocol.errors import ApiError, DecodeError, ErrorCode, ProtocolError
from protocol.messages import AckMessage, MoveMessage
from tests.lobby.support import fast_settings

from .conftest import ClientFactory

__all__: list[str] = []


class MisnamedMoveAck:
    """Injects the fault: answers MOVE with an ACK whose details lack ``location_id``."""

    name = "misnamed-move-ack"

    async def setup(self, ctx: LobbyContext) -> None:
        ctx.hub.register(MessageType.MOVE, self.on_move)

    async def close(self) -> None:
        pass

    async def on_move(self, conn: Connection, msg: MoveMessage) -> None:
        conn.send(AckMessage(ref_id=msg.message_id, details={"location": msg.to_location_id}))


async def test_a_malformed_ack_is_an_api_error_caused_by_a_protocol_error(
    tmp_path: Path,
) -> None:
    settings = fast_settings(tmp_path / "lobby-data")
    async with MasterServer(settings=settings, services=[MisnamedMoveAck()]) as server:
        client = NetworkClient(server.url, p2p_port=0)
        try:
            await client.connect("user_aria", "password123", register=True)
            character = await client.create_character("Aria", "Crimson Covenant", "Warrior")
            await client.select_character(character.id)
            with pytest.raises(ApiError) as info:
                await client.send_move(2, 1)
            assert info.value.code == ErrorCode.UNAVAILABLE
            assert "MoveAck" in str(info.value) and "location_id" in str(info.value)
            assert isinstance(info.value.__cause__, DecodeError)
            assert isinstance(info.value.__cause__, ProtocolError)
            assert client.character is not None and client.character.location_id == 1
        finally:
            await client.disconnect()


async def test_move_and_capture_return_typed_acks(make_client: ClientFactory) -> None:
    alice = await make_client("Alice")
    moved = await alice.send_move(2, 1)
    assert isinstance(moved, MoveAck)
    assert (moved.location_id, moved.previous_location_id) == (2, 1)
    assert alice.character is not None and alice.character.location_id == 2
    await alice.send_move(5, 2)
    world = await alice.get_world_state()
    shard = next(s for s in world.shards if s.location_id == 5 and s.owner is None)
    captured = await alice.capture_shard(shard.shard_id)
    assert isinstance(captured, ShardCaptureAck)
    assert captured.shard_id == shard.shard_id and captured.faction == "Crimson Covenant"
    assert captured.current_reality == (await alice.get_world_state()).current_reality
    answered: dict[str, Any] = captured.details()
    assert answered == {
        "shard_id": shard.shard_id,
        "faction": "Crimson Covenant",
        "current_reality": captured.current_reality,
    }
