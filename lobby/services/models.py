"""REST request bodies of the game services (pydantic v2, in the OpenAPI document).

Their response bodies, which clients read too, are defined in :mod:`protocol.rest`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "EventsQuery",
    "PartyCreateIn",
    "PartyIdIn",
    "PartyInviteIn",
    "PartyKickIn",
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventsQuery(_In):
    limit: int = Field(default=20, ge=1, le=100)
    before: int | None = Field(
        default=None,
        ge=1,
        le=2**63 - 1,
        description="only events with an id below this (next page)",
    )


# -- parties ------------------------------------------------------------------------------


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
