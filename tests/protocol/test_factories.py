"""Factories: the seed's create_* helpers and one per commonly built message."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

import protocol
from protocol import (
    AckMessage,
    BaseMessage,
    CharacterUpdateMessage,
    ChatMessage,
    CombatActionMessage,
    DisconnectMessage,
    ErrorCode,
    ErrorMessage,
    FactionChatMessage,
    HeartbeatMessage,
    MessageType,
    MoveMessage,
    PartyAcceptMessage,
    PartyChatMessage,
    PartyCreateMessage,
    PartyInviteMessage,
    PartyLeaveMessage,
    PositionUpdateMessage,
    RelayMessage,
    ShardCapturedMessage,
    TradeRequestMessage,
    Vec3,
    WhisperMessage,
    WorldAnnouncementMessage,
    deserialize,
    serialize,
)

__all__: list[str] = []


def _round_trip(msg: BaseMessage) -> None:
    assert deserialize(serialize(msg)) == msg
    assert msg.timestamp is None  # factories read no clock


def test_seed_create_chat_message() -> None:
    msg = protocol.create_chat_message(sender_id=1, sender_name="TestUser", content="Hello, world!")
    assert isinstance(msg, ChatMessage)
    assert (msg.sender_id, msg.sender_name, msg.content, msg.channel) == (
        1,
        "TestUser",
        "Hello, world!",
        "global",
    )
    assert protocol.create_chat_message(1, "A", "x", channel="trade").channel == "trade"
    _round_trip(msg)


def test_seed_create_character_update() -> None:
    msg = protocol.create_character_update(
        character_id=1, character_name="Aria", location_id=5, health=80, max_health=100, level=3
    )
    assert isinstance(msg, CharacterUpdateMessage)
    assert (msg.character_id, msg.character_name, msg.location_id) == (1, "Aria", 5)
    assert (msg.health, msg.max_health, msg.level) == (80, 100, 3)
    with_pos = protocol.create_character_update(1, "Aria", 5, 80, 100, 3, position=(1, 2, 3))
    assert with_pos.position == Vec3(x=1, y=2, z=3)
    _round_trip(with_pos)


def test_seed_create_shard_captured_message() -> None:
    msg = protocol.create_shard_captured_message(
        shard_id=1,
        shard_name="Phoenix Flame",
        character_id=9,
        character_name="Aria",
        faction="Crimson Covenant",
    )
    assert isinstance(msg, ShardCapturedMessage)
    assert msg.shard_name == "Phoenix Flame" and msg.faction == "Crimson Covenant"
    _round_trip(msg)


CASES: list[tuple[BaseMessage, type[BaseMessage], dict[str, Any]]] = [
    (
        protocol.create_whisper_message(1, "A", "psst", target_id=2, target_name="B"),
        WhisperMessage,
        {"target_id": 2, "target_name": "B", "channel": "whisper"},
    ),
    (
        protocol.create_party_chat_message(1, "A", "go", party_id=12),
        PartyChatMessage,
        {"party_id": "12", "channel": "party"},
    ),
    (
        protocol.create_faction_chat_message(1, "A", "hail", faction="Azure Order"),
        FactionChatMessage,
        {"faction": "Azure Order", "channel": "faction"},
    ),
    (
        protocol.create_world_announcement("Aetherfall!", priority="critical"),
        WorldAnnouncementMessage,
        {"priority": "critical", "content": "Aetherfall!"},
    ),
    (
        protocol.create_move_message(to_location_id=5, from_location_id=4),
        MoveMessage,
        {"to_location_id": 5, "from_location_id": 4, "character_id": None},
    ),
    (
        protocol.create_position_update(
            1, 2, {"x": 100.5, "y": 200.3, "z": 50.0}, Vec3(x=1.0), sent_at=3.5, seq=9
        ),
        PositionUpdateMessage,
        {"position": Vec3(x=100.5, y=200.3, z=50.0), "velocity": Vec3(x=1.0), "seq": 9},
    ),
    (
        protocol.create_combat_action("combat_123", "item", item_id=789),
        CombatActionMessage,
        {"combat_id": "combat_123", "action_type": "item", "item_id": 789},
    ),
    (
        protocol.create_combat_action(123, "attack", target_id=456),
        CombatActionMessage,
        {"combat_id": "123", "target_id": 456},
    ),
    (
        protocol.create_error_message("rate_limited", "slow down", {"retry_after": 1.5}, "m-1"),
        ErrorMessage,
        {"error_code": ErrorCode.RATE_LIMITED, "details": {"retry_after": 1.5}, "ref_id": "m-1"},
    ),
    (protocol.create_party_create("Heroes"), PartyCreateMessage, {"name": "Heroes"}),
    (
        protocol.create_party_invite(target_name="Bren"),
        PartyInviteMessage,
        {"target_name": "Bren"},
    ),
    (protocol.create_party_accept("p-1"), PartyAcceptMessage, {"party_id": "p-1"}),
    (protocol.create_party_leave(), PartyLeaveMessage, {"party_id": None}),
    (protocol.create_trade_request(target_id=2), TradeRequestMessage, {"target_id": 2}),
    (protocol.create_heartbeat(sent_at=1.0), HeartbeatMessage, {"sent_at": 1.0}),
    (protocol.create_ack("m-1", details={"id": 3}), AckMessage, {"ref_id": "m-1", "ok": True}),
    (protocol.create_disconnect("bye"), DisconnectMessage, {"reason": "bye"}),
    (
        protocol.create_relay_message(2, "SGk=", sender_id=1),
        RelayMessage,
        {"target_id": 2, "payload": "SGk=", "sender_id": 1},
    ),
]


@pytest.mark.parametrize(("msg", "cls", "fields"), CASES)
def test_factories(msg: BaseMessage, cls: type[BaseMessage], fields: dict[str, Any]) -> None:
    assert type(msg) is cls
    for name, value in fields.items():
        assert getattr(msg, name) == value
    _round_trip(msg)


def test_factories_refuse_bad_arguments() -> None:
    with pytest.raises(ValidationError):
        protocol.create_chat_message(1, "A", "")
    with pytest.raises(ValueError):
        protocol.create_error_message("not_a_code", "x")
    with pytest.raises(ValueError):
        protocol.create_party_invite()
    with pytest.raises(ValueError):
        protocol.create_trade_request()
    with pytest.raises(ValueError):
        protocol.create_position_update(1, 2, (1.0, 2.0))
    with pytest.raises(ValidationError):
        protocol.create_position_update(1, 2, (float("nan"), 0.0, 0.0))
    with pytest.raises(ValidationError):
        protocol.create_combat_action("c", "dance")  # type: ignore[arg-type]


def test_error_type_value() -> None:
    assert protocol.create_error_message(ErrorCode.NOT_FOUND, "x").type is MessageType.ERROR


def test_position_update_of_plain_floats_skips_model_validation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A game's per-frame update (float tuples, Vec3s) is built without running pydantic's
    validators, and equals the validated model; anything else still goes through them."""
    import protocol.factories as factories

    validated: list[dict[str, Any]] = []
    model = factories.PositionUpdateMessage

    def counting(**fields: Any) -> PositionUpdateMessage:
        validated.append(fields)
        return model(**fields)

    monkeypatch.setattr(factories, "PositionUpdateMessage", counting)
    fast = protocol.create_position_update(
        7, 3, (1.5, -2.0, 1e7), Vec3(x=0.5), sent_at=12.25, seq=65535
    )
    as_lists = protocol.create_position_update(
        7, 3, [1.5, -2.0, 1e7], [0.5, 0.0, 0.0], sent_at=12.25, seq=65535
    )
    assert validated == []
    assert as_lists.model_dump(exclude={"message_id"}) == fast.model_dump(exclude={"message_id"})
    slow = model(
        character_id=7,
        location_id=3,
        position=Vec3(x=1.5, y=-2.0, z=1e7),
        velocity=Vec3(x=0.5),
        sent_at=12.25,
        seq=65535,
    )
    assert fast.model_dump(exclude={"message_id"}) == slow.model_dump(exclude={"message_id"})
    assert fast.message_id != slow.message_id
    # ints, out-of-range values and NaN take the validating path (and are refused as before)
    protocol.create_position_update(1, 2, (1, 2, 3), sent_at=0.0)
    for bad, refusal in (
        ((1e8, 0.0, 0.0), ValidationError),
        ((float("nan"), 0.0, 0.0), ValidationError),
        ((True, 0.0, 0.0), ValidationError),
        ([0.0, 0.0, 1e8], ValidationError),
        ((0.0, 0.0), ValueError),  # to_vec3's "a vector is (x, y, z)"
        ((0.0, 0.0, 0.0, 0.0), ValueError),
        ([0.0, 0.0], ValueError),
    ):
        for position, velocity in ((bad, (0.0, 0.0, 0.0)), ((0.0, 0.0, 0.0), bad)):
            with pytest.raises(refusal, match="validation error|a vector is"):
                protocol.create_position_update(1, 2, position, velocity, sent_at=0.0)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        protocol.create_position_update(-1, 2, (0.0, 0.0, 0.0), sent_at=0.0)
    # the int vector and the negative id reached the model (bad vectors fail in Vec3 first)
    assert len(validated) == 2
