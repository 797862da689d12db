"""World messages: WORLD_STATE, SHARD_CAPTURED, SHARD_STATUS, SHARD_CAPTURE,
REALITY_SHIFT, AETHERFALL."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, Strict

from protocol.messages.base import (
    BaseMessage,
    Count,
    Id,
    MessageType,
    Name,
    ShortText,
    StrictModel,
    Text,
    Time,
)

__all__ = [
    "AetherfallMessage",
    "MAX_SHARDS",
    "RealityShiftMessage",
    "ShardCaptureMessage",
    "ShardCapturedMessage",
    "ShardInfo",
    "ShardStatusMessage",
    "WorldEvent",
    "WorldStateMessage",
]

MAX_SHARDS = 256
MAX_EVENTS = 100
Score = Annotated[int, Strict(), Field(ge=-(10**12), le=10**12)]


class ShardInfo(StrictModel):
    """One Crystal Shard and who holds it."""

    shard_id: Id
    shard_name: Name
    owner_faction: Name | None = None
    location_id: Id | None = None
    captured_by: Name | None = None
    captured_at: Time | None = None


class WorldEvent(StrictModel):
    """One entry of the world event log."""

    event_type: Name
    description: Text = ""
    timestamp: Time | None = None


class WorldStateMessage(BaseMessage):
    """A snapshot of the world."""

    type: Literal[MessageType.WORLD_STATE] = MessageType.WORLD_STATE
    current_reality: Name
    shards: list[ShardInfo] = Field(default_factory=list, max_length=MAX_SHARDS)
    faction_scores: dict[Name, Score] = Field(default_factory=dict, max_length=64)
    aetherfall_active: bool = False
    aetherfall_ends_at: Time | None = None
    online_players: Count | None = None
    recent_events: list[WorldEvent] = Field(default_factory=list, max_length=MAX_EVENTS)


class ShardCapturedMessage(BaseMessage):
    """A Crystal Shard was captured (seed field names)."""

    type: Literal[MessageType.SHARD_CAPTURED] = MessageType.SHARD_CAPTURED
    shard_id: Id
    shard_name: Name
    character_id: Id
    character_name: Name
    faction: Name
    previous_faction: Name | None = None
    location_id: Id | None = None


class ShardStatusMessage(BaseMessage):
    """The status of some or all shards."""

    type: Literal[MessageType.SHARD_STATUS] = MessageType.SHARD_STATUS
    shards: list[ShardInfo] = Field(default_factory=list, max_length=MAX_SHARDS)


class ShardCaptureMessage(BaseMessage):
    """A request to capture a shard (``character_id`` is set by the lobby from the session)."""

    type: Literal[MessageType.SHARD_CAPTURE] = MessageType.SHARD_CAPTURE
    shard_id: Id
    character_id: Id | None = None


class RealityShiftMessage(BaseMessage):
    """The world's reality changed."""

    type: Literal[MessageType.REALITY_SHIFT] = MessageType.REALITY_SHIFT
    new_reality: Name
    previous_reality: Name | None = None
    reason: ShortText | None = None


class AetherfallMessage(BaseMessage):
    """An Aetherfall event started or ended."""

    type: Literal[MessageType.AETHERFALL] = MessageType.AETHERFALL
    active: bool
    location_id: Id | None = None
    intensity: Annotated[int, Strict(), Field(ge=1, le=10)] | None = None
    starts_at: Time | None = None
    ends_at: Time | None = None
    description: Text | None = None
