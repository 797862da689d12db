"""Character messages: CHARACTER_LIST, _SELECT, _CREATE, _UPDATE, _DELETE."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, Strict, StringConstraints, model_validator

from protocol.messages.base import (
    B64,
    AnyId,
    BaseMessage,
    Gold,
    Id,
    Level,
    MessageType,
    Name,
    Points,
    StrictModel,
    Token,
)
from protocol.messages.location import Vec3

__all__ = [
    "CharacterCreateMessage",
    "CharacterDeleteMessage",
    "CharacterListMessage",
    "CharacterSelectMessage",
    "CharacterSummary",
    "CharacterUpdateMessage",
    "MAX_CHARACTERS",
]

MAX_CHARACTERS = 50
Endpoint = Annotated[str, Strict(), StringConstraints(min_length=1, max_length=128)]


class CharacterSummary(StrictModel):
    """One character as listed for its owner."""

    id: Id
    name: Name
    level: Level = 1
    faction: Name | None = None
    character_class: Name | None = None
    location_id: Id | None = None
    health: Points | None = None
    max_health: Points | None = None


class CharacterListMessage(BaseMessage):
    """The account's characters (empty in a request)."""

    type: Literal[MessageType.CHARACTER_LIST] = MessageType.CHARACTER_LIST
    characters: list[CharacterSummary] = Field(default_factory=list, max_length=MAX_CHARACTERS)


class CharacterSelectMessage(BaseMessage):
    """Select a character to play; in the mesh the client also sends its peer identity.

    The lobby's answer may carry the signed peer ``ticket``.
    """

    type: Literal[MessageType.CHARACTER_SELECT] = MessageType.CHARACTER_SELECT
    character_id: Id
    public_key: B64 | None = None
    node_id: AnyId | None = None
    endpoints: list[Endpoint] = Field(default_factory=list, max_length=8)
    ticket: Token | None = None


class CharacterCreateMessage(BaseMessage):
    """Create a character."""

    type: Literal[MessageType.CHARACTER_CREATE] = MessageType.CHARACTER_CREATE
    name: Name
    character_class: Name | None = None
    faction: Name | None = None


class CharacterUpdateMessage(BaseMessage):
    """A character's state changed (health, level, location...)."""

    type: Literal[MessageType.CHARACTER_UPDATE] = MessageType.CHARACTER_UPDATE
    character_id: Id
    character_name: Name
    location_id: Id | None = None
    health: Points
    max_health: Annotated[int, Strict(), Field(ge=1, le=1_000_000_000)]
    level: Level
    faction: Name | None = None
    experience: Gold | None = None
    gold: Gold | None = None
    position: Vec3 | None = None

    @model_validator(mode="after")
    def _health_within_max(self) -> Self:
        if self.health > self.max_health:
            raise ValueError("health exceeds max_health")
        return self


class CharacterDeleteMessage(BaseMessage):
    """Delete a character (request) or announce its deletion."""

    type: Literal[MessageType.CHARACTER_DELETE] = MessageType.CHARACTER_DELETE
    character_id: Id
