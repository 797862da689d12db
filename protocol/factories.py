"""Factories for commonly built messages (the seed's ``create_*`` helpers and more).

Each returns a validated model (so a bad argument raises pydantic's
``ValidationError`` at the call site, a programming error, not a wire error).
None of them reads a clock: ``timestamp`` stays ``None`` unless passed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from protocol.errors import DecodeError, ErrorCode
from protocol.messages import (
    AckMessage,
    ActionType,
    CharacterUpdateMessage,
    ChatMessage,
    CombatActionMessage,
    DisconnectMessage,
    ErrorMessage,
    FactionChatMessage,
    HeartbeatMessage,
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
)
from protocol.movement import position_update

__all__ = [
    "VecLike",
    "create_ack",
    "create_character_update",
    "create_chat_message",
    "create_combat_action",
    "create_disconnect",
    "create_error_message",
    "create_faction_chat_message",
    "create_heartbeat",
    "create_move_message",
    "create_party_accept",
    "create_party_chat_message",
    "create_party_create",
    "create_party_invite",
    "create_party_leave",
    "create_position_update",
    "create_relay_message",
    "create_shard_captured_message",
    "create_trade_request",
    "create_whisper_message",
    "create_world_announcement",
    "to_vec3",
]

VecLike = Vec3 | Mapping[str, float] | Sequence[float]
"""A ``Vec3``, a ``{"x": .., "y": .., "z": ..}`` mapping, or an ``(x, y, z)`` sequence."""


def to_vec3(value: VecLike) -> Vec3:
    """A :class:`Vec3` from any :data:`VecLike` (validated)."""
    if isinstance(value, Vec3):
        return value
    if isinstance(value, Mapping):
        return Vec3.model_validate(dict(value))
    if isinstance(value, str | bytes) or len(value) != 3:
        raise ValueError("a vector is (x, y, z)")
    x, y, z = value
    return Vec3(x=x, y=y, z=z)


def create_chat_message(
    sender_id: int | None,
    sender_name: str | None,
    content: str,
    channel: str = "global",
) -> ChatMessage:
    """A CHAT message (the seed's ``create_chat_message``)."""
    return ChatMessage(
        sender_id=sender_id, sender_name=sender_name, content=content, channel=channel
    )


def create_whisper_message(
    sender_id: int | None,
    sender_name: str | None,
    content: str,
    *,
    target_id: int | None = None,
    target_name: str | None = None,
) -> WhisperMessage:
    """A WHISPER to a character given by id and/or name."""
    return WhisperMessage(
        sender_id=sender_id,
        sender_name=sender_name,
        content=content,
        target_id=target_id,
        target_name=target_name,
    )


def create_party_chat_message(
    sender_id: int | None,
    sender_name: str | None,
    content: str,
    *,
    party_id: str | int | None = None,
) -> PartyChatMessage:
    """A PARTY_CHAT message."""
    return PartyChatMessage.model_validate(
        {
            "sender_id": sender_id,
            "sender_name": sender_name,
            "content": content,
            "party_id": party_id,
        }
    )


def create_faction_chat_message(
    sender_id: int | None,
    sender_name: str | None,
    content: str,
    *,
    faction: str | None = None,
) -> FactionChatMessage:
    """A FACTION_CHAT message."""
    return FactionChatMessage(
        sender_id=sender_id, sender_name=sender_name, content=content, faction=faction
    )


def create_world_announcement(
    content: str, *, sender_name: str | None = None, priority: str = "info"
) -> WorldAnnouncementMessage:
    """A WORLD_ANNOUNCEMENT (``priority``: info, warning or critical)."""
    return WorldAnnouncementMessage.model_validate(
        {"content": content, "sender_name": sender_name, "priority": priority}
    )


def create_character_update(
    character_id: int,
    character_name: str,
    location_id: int | None,
    health: int,
    max_health: int,
    level: int,
    *,
    faction: str | None = None,
    experience: int | None = None,
    gold: int | None = None,
    position: VecLike | None = None,
) -> CharacterUpdateMessage:
    """A CHARACTER_UPDATE (the seed's ``create_character_update``)."""
    return CharacterUpdateMessage(
        character_id=character_id,
        character_name=character_name,
        location_id=location_id,
        health=health,
        max_health=max_health,
        level=level,
        faction=faction,
        experience=experience,
        gold=gold,
        position=None if position is None else to_vec3(position),
    )


def create_shard_captured_message(
    shard_id: int,
    shard_name: str,
    character_id: int,
    character_name: str,
    faction: str,
    *,
    previous_faction: str | None = None,
    location_id: int | None = None,
) -> ShardCapturedMessage:
    """A SHARD_CAPTURED event (the seed's ``create_shard_captured_message``)."""
    return ShardCapturedMessage(
        shard_id=shard_id,
        shard_name=shard_name,
        character_id=character_id,
        character_name=character_name,
        faction=faction,
        previous_faction=previous_faction,
        location_id=location_id,
    )


def create_error_message(
    error_code: ErrorCode | str,
    error_message: str,
    details: dict[str, Any] | None = None,
    ref_id: str | None = None,
) -> ErrorMessage:
    """An ERROR message (``error_code`` must be an :class:`ErrorCode` or its value)."""
    return ErrorMessage(
        error_code=ErrorCode(error_code),
        error_message=error_message,
        details=details,
        ref_id=ref_id,
    )


def create_move_message(
    to_location_id: int,
    from_location_id: int | None = None,
    *,
    character_id: int | None = None,
) -> MoveMessage:
    """A MOVE (discrete location change), as the seed's ``send_move`` sends it."""
    return MoveMessage(
        character_id=character_id,
        to_location_id=to_location_id,
        from_location_id=from_location_id,
    )


def create_position_update(
    character_id: int,
    location_id: int,
    position: VecLike,
    velocity: VecLike = (0.0, 0.0, 0.0),
    *,
    sent_at: float = 0.0,
    seq: int = 0,
) -> PositionUpdateMessage:
    """A POSITION_UPDATE (continuous movement); ``sent_at`` is the caller's clock.

    A game calls this every frame: plain ``float`` vectors (or ``Vec3`` s) and in-range
    ids take a fast path that checks the same bounds as the model without running its
    validators; anything else is validated by the model (and refused as it refuses it).
    """
    # A tuple (the usual call) goes to position_update as it is: that checks its values are
    # plain floats within bounds (DecodeError); a wrong count fails the unpacking (ValueError).
    pos = position if type(position) is tuple else _components(position)
    vel = velocity if type(velocity) is tuple else _components(velocity)
    if pos is not None and vel is not None:
        try:
            px, py, pz = pos
            vx, vy, vz = vel
            return position_update(character_id, location_id, seq, sent_at, px, py, pz, vx, vy, vz)
        except (ValueError, DecodeError):
            pass  # not three plain floats each, or out of bounds: the model's error names it
    return PositionUpdateMessage(
        character_id=character_id,
        location_id=location_id,
        position=to_vec3(position),
        velocity=to_vec3(velocity),
        sent_at=sent_at,
        seq=seq,
    )


def _components(value: VecLike) -> Sequence[float] | None:
    """The components of a list or ``Vec3`` (of a tuple: the caller takes it as it is), for
    the fast path of :func:`create_position_update`, which checks them; else None."""
    if type(value) is list:
        return value
    if type(value) is Vec3:
        return (value.x, value.y, value.z)
    return None


def create_combat_action(
    combat_id: str | int,
    action_type: ActionType,
    *,
    target_id: int | None = None,
    ability_name: str | None = None,
    item_id: int | None = None,
) -> CombatActionMessage:
    """A COMBAT_ACTION, as the seed's ``send_combat_action`` sends it."""
    return CombatActionMessage.model_validate(
        {
            "combat_id": combat_id,
            "action_type": action_type,
            "target_id": target_id,
            "ability_name": ability_name,
            "item_id": item_id,
        }
    )


def create_party_create(name: str | None = None) -> PartyCreateMessage:
    """A PARTY_CREATE request."""
    return PartyCreateMessage(name=name)


def create_party_invite(
    *,
    target_id: int | None = None,
    target_name: str | None = None,
    party_id: str | int | None = None,
) -> PartyInviteMessage:
    """A PARTY_INVITE of a character given by id and/or name."""
    if target_id is None and target_name is None:
        raise ValueError("a party invite needs target_id or target_name")
    return PartyInviteMessage.model_validate(
        {"target_id": target_id, "target_name": target_name, "party_id": party_id}
    )


def create_party_accept(party_id: str | int) -> PartyAcceptMessage:
    """A PARTY_ACCEPT of an invitation."""
    return PartyAcceptMessage.model_validate({"party_id": party_id})


def create_party_leave(party_id: str | int | None = None) -> PartyLeaveMessage:
    """A PARTY_LEAVE."""
    return PartyLeaveMessage.model_validate({"party_id": party_id})


def create_trade_request(
    *, target_id: int | None = None, target_name: str | None = None
) -> TradeRequestMessage:
    """A TRADE_REQUEST to a character given by id and/or name."""
    if target_id is None and target_name is None:
        raise ValueError("a trade request needs target_id or target_name")
    return TradeRequestMessage(target_id=target_id, target_name=target_name)


def create_heartbeat(
    *, sent_at: float | None = None, reply_to: str | None = None
) -> HeartbeatMessage:
    """A HEARTBEAT (``reply_to`` answers another heartbeat's ``message_id``)."""
    return HeartbeatMessage(sent_at=sent_at, reply_to=reply_to)


def create_ack(
    ref_id: str, *, ok: bool = True, details: dict[str, Any] | None = None
) -> AckMessage:
    """An ACK of the client request ``ref_id``."""
    return AckMessage(ref_id=ref_id, ok=ok, details=details)


def create_disconnect(reason: str | None = None) -> DisconnectMessage:
    """A DISCONNECT with a reason."""
    return DisconnectMessage(reason=reason)


def create_relay_message(
    target_id: int, payload: str, *, sender_id: int | None = None
) -> RelayMessage:
    """A RELAY of an opaque base64 ``payload`` to character ``target_id``."""
    return RelayMessage(target_id=target_id, payload=payload, sender_id=sender_id)
