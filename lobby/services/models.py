"""REST request and response bodies of the game services (pydantic v2, in the OpenAPI document)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AetherfallOut",
    "EventOut",
    "EventsOut",
    "EventsQuery",
    "InventoryOut",
    "ItemOut",
    "OkOut",
    "PartyCreateIn",
    "PartyIdIn",
    "PartyInviteIn",
    "PartyInviteOut",
    "PartyKickIn",
    "PartyMemberOut",
    "PartyOut",
    "ShardOut",
    "ShardsOut",
    "WorldStateOut",
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- world --------------------------------------------------------------------------------


class ShardOut(BaseModel):
    shard_id: int
    name: str
    location_id: int
    location_name: str | None = None
    owner: str | None = Field(default=None, description="owning faction (None: unclaimed)")
    captured_at: float | None = None
    captured_by: int | None = Field(default=None, description="character id")
    captured_by_name: str | None = None
    capturable_at: float | None = Field(
        default=None, description="end of the capture cooldown (None: capturable now)"
    )


class ShardsOut(BaseModel):
    shards: list[ShardOut]
    faction_shards: dict[str, int] = Field(description="shards held per faction")


class AetherfallOut(BaseModel):
    seed: int
    at: float
    ends_at: float
    epicentre_id: int
    epicentre_name: str
    struck_location_ids: list[int]
    damage: int
    released_shard_ids: list[int]


class EventOut(BaseModel):
    id: int
    event_type: str
    description: str
    data: dict[str, Any] | None = None
    timestamp: float


class WorldStateOut(BaseModel):
    current_reality: str
    realities: list[str]
    faction_shards: dict[str, int]
    shards: list[ShardOut]
    aetherfall_active: bool
    aetherfall: AetherfallOut | None = Field(default=None, description="the active Aetherfall")
    next_aetherfall_at: float
    online_players: int
    recent_events: list[EventOut] = Field(description="newest first")


class EventsQuery(_In):
    limit: int = Field(default=20, ge=1, le=100)
    before: int | None = Field(
        default=None,
        ge=1,
        le=2**63 - 1,
        description="only events with an id below this (next page)",
    )


class EventsOut(BaseModel):
    events: list[EventOut] = Field(description="newest first")
    next_before: int | None = Field(
        default=None, description="pass as ?before= for the next page (None: no more)"
    )


# -- parties ------------------------------------------------------------------------------


class PartyMemberOut(BaseModel):
    character_id: int
    name: str
    joined_at: float
    is_leader: bool
    online: bool = False
    location_id: int | None = None


class PartyInviteOut(BaseModel):
    character_id: int
    invited_by: int
    expires_at: float


class PartyOut(BaseModel):
    party_id: str
    name: str | None = None
    leader_id: int
    size_limit: int
    members: list[PartyMemberOut]
    invites: list[PartyInviteOut]


class PartyCreateIn(_In):
    name: str | None = Field(default=None, min_length=1, max_length=64)


class PartyInviteIn(_In):
    # the lobby needs one of the two (a non-null target_id wins)
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"required": ["target_id"], "properties": {"target_id": {"not": {"type": "null"}}}},
                {"required": ["target_name"], "properties": {"target_name": {"type": "string"}}},
            ]
        },
    )

    target_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    target_name: str | None = Field(default=None, min_length=1, max_length=64)


class PartyIdIn(_In):
    party_id: str = Field(min_length=1, max_length=64)


class PartyKickIn(_In):
    target_id: int = Field(ge=1, le=2**63 - 1)


class OkOut(BaseModel):
    ok: bool = True


# -- inventory ----------------------------------------------------------------------------


class ItemOut(BaseModel):
    item_id: int = Field(description="unique id of this item")
    template_id: int
    name: str
    kind: str


class InventoryOut(BaseModel):
    character_id: int
    gold: int
    items: list[ItemOut]
