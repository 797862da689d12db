"""Message models: one rich sample per MessageType, limits, envelope defaults."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import ValidationError

import protocol
from protocol import (
    MESSAGE_TYPES,
    AckMessage,
    AetherfallMessage,
    AuthRequestMessage,
    AuthResponseMessage,
    BaseMessage,
    CharacterCreateMessage,
    CharacterDeleteMessage,
    CharacterListMessage,
    CharacterSelectMessage,
    CharacterSummary,
    CharacterUpdateMessage,
    ChatMessage,
    CombatActionMessage,
    Combatant,
    CombatDamageMessage,
    CombatEndMessage,
    CombatHealMessage,
    CombatStartMessage,
    CombatStateMessage,
    DisconnectMessage,
    ErrorCode,
    ErrorMessage,
    FactionChatMessage,
    HeartbeatMessage,
    LocationUpdateMessage,
    MessageType,
    MoveMessage,
    PartyAcceptMessage,
    PartyChatMessage,
    PartyCreateMessage,
    PartyDeclineMessage,
    PartyDisbandMessage,
    PartyInviteMessage,
    PartyKickMessage,
    PartyLeaveMessage,
    PartyMember,
    PartyUpdateMessage,
    PeerAckMessage,
    PeerHelloMessage,
    PeerInfoMessage,
    PeerProofMessage,
    PeerWelcomeMessage,
    PlayerJoinedAreaMessage,
    PlayerLeftAreaMessage,
    PositionUpdateMessage,
    RealityShiftMessage,
    RelayMessage,
    ShardCapturedMessage,
    ShardCaptureMessage,
    ShardInfo,
    ShardStatusMessage,
    TradeAcceptMessage,
    TradeCompleteMessage,
    TradeDeclineMessage,
    TradeItem,
    TradeOffer,
    TradeRequestMessage,
    TradeUpdateMessage,
    Vec3,
    WhisperMessage,
    WorldAnnouncementMessage,
    WorldEvent,
    WorldStateMessage,
)

__all__ = ["SAMPLES"]

_V = Vec3(x=1.5, y=-2.25, z=1e6)
_MEMBERS = [
    PartyMember(character_id=1, character_name="Aria", level=3, location_id=2, is_leader=True),
    PartyMember(character_id=2, character_name="Bren", online=False),
]
_FIGHTERS = [
    Combatant(id=1, name="Aria", health=80, max_health=100, level=3, team="a"),
    Combatant(id=900, name="Wraith", health=0, max_health=50, is_npc=True),
]
_SHARDS = [
    ShardInfo(
        shard_id=1,
        shard_name="Phoenix Flame",
        owner_faction="Crimson Covenant",
        location_id=4,
        captured_by="Aria",
        captured_at=1_700_000_000.5,
    ),
    ShardInfo(shard_id=2, shard_name="Void Heart"),
]
_OFFERS = [
    TradeOffer(character_id=1, items=[TradeItem(item_id=5, name="Sword", quantity=1)], gold=10),
    TradeOffer(character_id=2, gold=0, confirmed=True),
]
_TICKET = "eyJ0aWNrZXQiOiJ4In0." + "A" * 86

SAMPLES: dict[MessageType, BaseMessage] = {
    m.type: m
    for m in [
        AuthRequestMessage(username="alice", password="correct horse"),
        AuthResponseMessage(
            success=True,
            player_id=7,
            username="alice",
            session_token="tok_123",
            expires_at=1_700_003_600.0,
            message="welcome",
        ),
        DisconnectMessage(reason="bye"),
        CharacterListMessage(
            characters=[
                CharacterSummary(
                    id=1,
                    name="Aria",
                    level=3,
                    faction="Crimson Covenant",
                    character_class="mage",
                    location_id=2,
                    health=80,
                    max_health=100,
                )
            ]
        ),
        CharacterSelectMessage(
            character_id=1,
            public_key="MCowBQYDK2VwAyEA_x-y",
            node_id="node-1",
            endpoints=["127.0.0.1:4433"],
            ticket=_TICKET,
        ),
        CharacterCreateMessage(name="Aria", character_class="mage", faction="Crimson Covenant"),
        CharacterUpdateMessage(
            character_id=1,
            character_name="Aria",
            location_id=5,
            health=80,
            max_health=100,
            level=3,
            faction="Crimson Covenant",
            experience=1200,
            gold=55,
            position=_V,
        ),
        CharacterDeleteMessage(character_id=1),
        MoveMessage(character_id=1, to_location_id=5, from_location_id=4),
        LocationUpdateMessage(
            character_id=1,
            character_name="Aria",
            location_id=5,
            location_name="Ember Vale",
            previous_location_id=4,
        ),
        PlayerJoinedAreaMessage(
            character_id=2,
            character_name="Bren",
            location_id=5,
            level=4,
            faction="Azure Order",
            position=_V,
        ),
        PlayerLeftAreaMessage(
            character_id=2, character_name="Bren", location_id=5, to_location_id=6
        ),
        PositionUpdateMessage(
            character_id=1,
            location_id=5,
            position=_V,
            velocity=Vec3(x=0.5),
            sent_at=12345.678,
            seq=65535,
        ),
        ChatMessage(sender_id=1, sender_name="Aria", content="Hello, world! ✨", channel="global"),
        WhisperMessage(
            sender_id=1, sender_name="Aria", content="psst", target_id=2, target_name="Bren"
        ),
        PartyChatMessage(sender_id=1, sender_name="Aria", content="go", party_id="p-1"),
        FactionChatMessage(
            sender_id=1, sender_name="Aria", content="for the covenant", faction="Crimson Covenant"
        ),
        WorldAnnouncementMessage(content="Aetherfall in 5 minutes", priority="warning"),
        PartyCreateMessage(party_id="p-1", leader_id=1, name="Heroes"),
        PartyInviteMessage(
            party_id="p-1", inviter_id=1, inviter_name="Aria", target_id=2, target_name="Bren"
        ),
        PartyAcceptMessage(party_id="p-1", character_id=2),
        PartyDeclineMessage(party_id="p-1", character_id=2, reason="busy"),
        PartyLeaveMessage(party_id="p-1", character_id=2),
        PartyKickMessage(party_id="p-1", target_id=2, reason="afk"),
        PartyDisbandMessage(party_id="p-1", reason="leader left"),
        PartyUpdateMessage(party_id="p-1", name="Heroes", leader_id=1, members=_MEMBERS),
        CombatStartMessage(
            combat_id="combat_123", location_id=5, initiator_id=1, participants=_FIGHTERS
        ),
        CombatActionMessage(
            combat_id="combat_123",
            action_type="spell",
            actor_id=1,
            target_id=900,
            ability_name="Fireball",
        ),
        CombatDamageMessage(
            combat_id="combat_123",
            source_id=1,
            source_name="Aria",
            target_id=900,
            target_name="Wraith",
            amount=25,
            damage_type="fire",
            critical=True,
            target_health=25,
        ),
        CombatHealMessage(
            combat_id="combat_123",
            source_id=1,
            source_name="Aria",
            target_id=1,
            amount=10,
            target_health=90,
        ),
        CombatEndMessage(
            combat_id="combat_123",
            result="victory",
            winner_ids=[1],
            experience_gained=100,
            gold_gained=5,
        ),
        CombatStateMessage(
            combat_id="combat_123", round=2, active=True, current_turn=1, participants=_FIGHTERS
        ),
        WorldStateMessage(
            current_reality="Prime",
            shards=_SHARDS,
            faction_scores={"Crimson Covenant": 3, "Azure Order": -1},
            aetherfall_active=True,
            aetherfall_ends_at=1_700_000_900.0,
            online_players=12,
            recent_events=[WorldEvent(event_type="shard_captured", description="x", timestamp=1.0)],
        ),
        ShardCapturedMessage(
            shard_id=1,
            shard_name="Phoenix Flame",
            character_id=1,
            character_name="Aria",
            faction="Crimson Covenant",
            previous_faction="Azure Order",
            location_id=4,
        ),
        ShardStatusMessage(shards=_SHARDS),
        ShardCaptureMessage(shard_id=1, character_id=1),
        RealityShiftMessage(new_reality="Shadow", previous_reality="Prime", reason="shards"),
        AetherfallMessage(
            active=True,
            location_id=4,
            intensity=7,
            starts_at=10.0,
            ends_at=70.0,
            description="the sky tears",
        ),
        TradeRequestMessage(
            trade_id="t-1", initiator_id=1, initiator_name="Aria", target_id=2, target_name="Bren"
        ),
        TradeAcceptMessage(trade_id="t-1", character_id=2),
        TradeDeclineMessage(trade_id="t-1", character_id=2, reason="no"),
        TradeUpdateMessage(
            trade_id="t-1",
            character_id=1,
            items=[TradeItem(item_id=5, quantity=2)],
            gold=3,
            confirmed=False,
            offers=_OFFERS,
        ),
        TradeCompleteMessage(trade_id="t-1", success=True, offers=_OFFERS),
        PeerHelloMessage(
            node_id="node-1",
            challenge="q83vEjRWeJA=",
            ticket=_TICKET,
            public_key="MCowBQYDK2VwAyEA",
            group_tag="abc_-",
            character_id=1,
            capabilities=["movement.v1", "relay"],
        ),
        PeerProofMessage(signature="c2lnbmF0dXJl", group_proof="cHJvb2Y="),
        PeerWelcomeMessage(node_id="node-2", character_id=2, character_name="Bren"),
        PeerAckMessage(ref_id="0123456789abcdef0123456789abcdef"),
        PeerInfoMessage(
            character_id=2,
            character_name="Bren",
            ticket=_TICKET,
            endpoints=["127.0.0.1:4433", "[::1]:4433"],
            faction="Azure Order",
            location_id=5,
            node_id="node-2",
            public_key="MCowBQYDK2VwAyEA",
        ),
        RelayMessage(target_id=2, sender_id=1, payload="SGVsbG8gd29ybGQ="),
        ErrorMessage(
            error_code=ErrorCode.INVALID_MESSAGE,
            error_message="bad",
            details={"errors": [{"loc": "content", "n": 1, "f": 0.5, "ok": True, "z": None}]},
            ref_id="abc",
        ),
        HeartbeatMessage(sent_at=12.5, reply_to="abc"),
        AckMessage(ref_id="abc", ok=True, details={"trade_id": "t-1"}),
    ]
}


def test_every_message_type_has_a_model_and_a_sample() -> None:
    assert set(MESSAGE_TYPES) == set(MessageType)
    missing = set(MessageType) - set(SAMPLES)
    assert not missing, f"add a sample for {sorted(missing)}"
    for message_type, sample in SAMPLES.items():
        assert type(sample) is MESSAGE_TYPES[message_type]


def test_contract_types_and_names() -> None:
    contract = (
        "AUTH_REQUEST AUTH_RESPONSE DISCONNECT CHARACTER_LIST CHARACTER_SELECT CHARACTER_CREATE "
        "CHARACTER_UPDATE CHARACTER_DELETE MOVE LOCATION_UPDATE PLAYER_JOINED_AREA "
        "PLAYER_LEFT_AREA CHAT WHISPER PARTY_CHAT FACTION_CHAT WORLD_ANNOUNCEMENT PARTY_CREATE "
        "PARTY_INVITE PARTY_ACCEPT PARTY_DECLINE PARTY_LEAVE PARTY_KICK PARTY_DISBAND "
        "PARTY_UPDATE COMBAT_START COMBAT_ACTION COMBAT_DAMAGE COMBAT_HEAL COMBAT_END "
        "COMBAT_STATE WORLD_STATE SHARD_CAPTURED SHARD_STATUS REALITY_SHIFT AETHERFALL "
        "TRADE_REQUEST TRADE_ACCEPT TRADE_DECLINE TRADE_UPDATE TRADE_COMPLETE ERROR HEARTBEAT "
        "POSITION_UPDATE PEER_HELLO PEER_PROOF PEER_WELCOME PEER_ACK PEER_INFO RELAY "
        "SHARD_CAPTURE ACK"
    ).split()
    assert sorted(contract) == sorted(t.name for t in MessageType)
    for t in MessageType:
        assert t.value == t.name.lower()
        expected = "".join(part.capitalize() for part in t.name.split("_")) + "Message"
        assert MESSAGE_TYPES[t].__name__ == expected
        assert getattr(protocol, expected) is MESSAGE_TYPES[t]


def test_envelope_defaults() -> None:
    a = ChatMessage(content="x")
    b = ChatMessage(content="x")
    assert a.type is MessageType.CHAT
    assert a.timestamp is None
    assert a.version == protocol.PROTOCOL_VERSION == "1.1"
    assert a.message_id != b.message_id
    assert len(a.message_id) == 32 and int(a.message_id, 16) >= 0
    assert a.message_id[12] == "4" and a.message_id[16] in "89ab"  # UUID version 4 layout


def test_seed_field_names() -> None:
    chat = ChatMessage(sender_id=1, sender_name="A", content="hi")
    assert (chat.sender_id, chat.sender_name, chat.content, chat.channel) == (
        1,
        "A",
        "hi",
        "global",
    )
    whisper = SAMPLES[MessageType.WHISPER]
    assert isinstance(whisper, WhisperMessage)
    assert (whisper.target_id, whisper.target_name) == (2, "Bren")
    damage = SAMPLES[MessageType.COMBAT_DAMAGE]
    assert isinstance(damage, CombatDamageMessage) and damage.amount == 25
    err = SAMPLES[MessageType.ERROR]
    assert isinstance(err, ErrorMessage)
    assert (err.error_code, err.error_message, err.ref_id) == ("invalid_message", "bad", "abc")
    world = SAMPLES[MessageType.WORLD_STATE]
    assert isinstance(world, WorldStateMessage) and world.current_reality == "Prime"


BAD: list[tuple[type[BaseMessage], dict[str, Any]]] = [
    (ChatMessage, {"content": ""}),
    (ChatMessage, {"content": "x" * (protocol.MAX_CHAT_LENGTH + 1)}),
    (ChatMessage, {"content": "x", "unknown": 1}),
    (ChatMessage, {"content": "x", "sender_id": -1}),
    (ChatMessage, {"content": "x", "sender_id": True}),
    (ChatMessage, {"content": "x", "sender_id": "1"}),
    (ChatMessage, {"content": "x", "sender_id": 2**63}),
    (ChatMessage, {"content": "x", "channel": "Not A Channel"}),
    (ChatMessage, {"content": "x", "timestamp": math.nan}),
    (ChatMessage, {"content": "x", "message_id": ""}),
    (ChatMessage, {"content": "x", "message_id": "a b"}),
    (ChatMessage, {"content": "x", "version": "one"}),
    (ChatMessage, {"content": 5}),
    (
        CharacterUpdateMessage,
        {"character_id": 1, "character_name": "A", "health": 101, "max_health": 100, "level": 1},
    ),
    (
        CharacterUpdateMessage,
        {"character_id": 1, "character_name": "A", "health": 1, "max_health": 100, "level": 0},
    ),
    (PositionUpdateMessage, {"character_id": 1, "location_id": 1, "position": {"x": math.inf}}),
    (PositionUpdateMessage, {"character_id": 1, "location_id": 1, "position": {"x": 1e8}}),
    (PositionUpdateMessage, {"character_id": 2**32, "location_id": 1, "position": {}}),
    (PositionUpdateMessage, {"character_id": 1, "location_id": 1, "position": {}, "seq": 65536}),
    (CombatActionMessage, {"combat_id": "c", "action_type": "dance"}),
    (CombatActionMessage, {"combat_id": "", "action_type": "attack"}),
    (
        PartyUpdateMessage,
        {
            "party_id": "p",
            "members": [{"character_id": i, "character_name": "m"} for i in range(17)],
        },
    ),
    (ErrorMessage, {"error_code": "no_such_code", "error_message": "x"}),
    (ErrorMessage, {"error_code": "bad_request", "error_message": "x", "details": {"f": math.nan}}),
    (ErrorMessage, {"error_code": "bad_request", "error_message": "x", "details": {"n": 2**64}}),
    (ErrorMessage, {"error_code": "bad_request", "error_message": "x", "details": {"o": object()}}),
    (
        ErrorMessage,
        {
            "error_code": "bad_request",
            "error_message": "x",
            "details": {"d": [[[[[[[[[[1]]]]]]]]]]},
        },
    ),
    (
        ErrorMessage,
        {"error_code": "bad_request", "error_message": "x", "details": {"l": list(range(300))}},
    ),
    (RelayMessage, {"target_id": 1, "payload": "not base64!"}),
    (RelayMessage, {"target_id": 1, "payload": "A" * (48 * 1024 + 1)}),
    (WorldStateMessage, {"current_reality": "P", "faction_scores": {str(i): 1 for i in range(65)}}),
]


@pytest.mark.parametrize(("model", "fields"), BAD)
def test_limits_refuse(model: type[BaseMessage], fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        model.model_validate(fields)


def test_ref_ids_accept_integers_and_stringify_them() -> None:
    msg = PartyAcceptMessage.model_validate({"party_id": 12})
    assert msg.party_id == "12"
    with pytest.raises(ValidationError):
        PartyAcceptMessage.model_validate({"party_id": True})


def test_package_reexports_every_public_name() -> None:
    import importlib

    for name in (
        "protocol.errors",
        "protocol.version",
        "protocol.messages",
        "protocol.codec",
        "protocol.movement",
        "protocol.factories",
        "protocol.crypto",
    ):
        module = importlib.import_module(name)
        missing = [n for n in module.__all__ if n not in protocol.__all__]
        assert not missing, f"protocol/__init__.py does not re-export {name}: {missing}"
        for n in module.__all__:
            assert getattr(protocol, n) is getattr(module, n)
