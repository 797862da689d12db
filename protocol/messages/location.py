"""Movement and location messages: MOVE, LOCATION_UPDATE, PLAYER_JOINED_AREA,
PLAYER_LEFT_AREA and POSITION_UPDATE (the JSON twin of the binary movement datagram,
see :mod:`protocol.movement`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, Strict

from protocol.messages.base import (
    COORD_LIMIT,
    BaseMessage,
    Id,
    Level,
    MessageType,
    Name,
    StrictModel,
)

__all__ = [
    "Coord",
    "MoveMessage",
    "LocationUpdateMessage",
    "PlayerJoinedAreaMessage",
    "PlayerLeftAreaMessage",
    "PositionUpdateMessage",
    "U16",
    "U32",
    "Vec3",
]

Coord = Annotated[float, Strict(), Field(allow_inf_nan=False, ge=-COORD_LIMIT, le=COORD_LIMIT)]
U32 = Annotated[int, Strict(), Field(ge=0, le=0xFFFFFFFF)]
U16 = Annotated[int, Strict(), Field(ge=0, le=0xFFFF)]
SentAt = Annotated[float, Strict(), Field(allow_inf_nan=False, ge=-1e13, le=1e13)]


class Vec3(StrictModel):
    """A position or velocity: finite components within +-``COORD_LIMIT``."""

    x: Coord = 0.0
    y: Coord = 0.0
    z: Coord = 0.0


class MoveMessage(BaseMessage):
    """A discrete location change (validated and persisted by the lobby)."""

    type: Literal[MessageType.MOVE] = MessageType.MOVE
    character_id: Id | None = None
    to_location_id: Id
    from_location_id: Id | None = None


class LocationUpdateMessage(BaseMessage):
    """A character is now at ``location_id``."""

    type: Literal[MessageType.LOCATION_UPDATE] = MessageType.LOCATION_UPDATE
    character_id: Id
    character_name: Name | None = None
    location_id: Id
    location_name: Name | None = None
    previous_location_id: Id | None = None


class PlayerJoinedAreaMessage(BaseMessage):
    """A player entered the recipient's area."""

    type: Literal[MessageType.PLAYER_JOINED_AREA] = MessageType.PLAYER_JOINED_AREA
    character_id: Id
    character_name: Name
    location_id: Id
    level: Level | None = None
    faction: Name | None = None
    position: Vec3 | None = None


class PlayerLeftAreaMessage(BaseMessage):
    """A player left the recipient's area."""

    type: Literal[MessageType.PLAYER_LEFT_AREA] = MessageType.PLAYER_LEFT_AREA
    character_id: Id
    character_name: Name | None = None
    location_id: Id
    to_location_id: Id | None = None


class PositionUpdateMessage(BaseMessage):
    """Continuous movement: newest ``seq`` wins (16-bit wrap-around, see ``seq_newer``).

    ``sent_at`` is the sender's clock in seconds (float64 in the binary form too);
    ``position`` and ``velocity`` travel as float32 in the binary form.
    """

    type: Literal[MessageType.POSITION_UPDATE] = MessageType.POSITION_UPDATE
    character_id: U32
    location_id: U32
    position: Vec3
    velocity: Vec3 = Field(default_factory=Vec3)
    sent_at: SentAt = 0.0
    seq: U16 = 0
