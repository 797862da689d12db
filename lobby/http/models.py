"""Request bodies of the core REST API (pydantic v2).

The same models validate requests and generate the OpenAPI document
(:mod:`lobby.http.openapi`); requests forbid unknown fields. The response
bodies, which clients read too, are defined in :mod:`protocol.rest`.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from lobby.characters import NAME_PATTERN
from protocol.candidates import IP_ENDPOINT_PATTERN, Candidate
from protocol.errors import ErrorCode, LobbyError

__all__ = [
    "CharacterCreateRequest",
    "CharacterSelectRequest",
    "LoginRequest",
    "RegisterRequest",
    "RequestModel",
    "USERNAME_PATTERN",
]

USERNAME_PATTERN = r"^[A-Za-z0-9_.-]{3,32}$"

KEY_PATTERN = r"^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$"
"""32 bytes as canonical unpadded base64url (the last character carries 4 bits)."""

_NAME_RE = re.compile(NAME_PATTERN)


class RequestModel(BaseModel):
    """Base of request bodies: unknown fields are an error."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class RegisterRequest(RequestModel):
    username: str = Field(
        min_length=3,
        max_length=32,
        pattern=USERNAME_PATTERN,
        description="3-32 characters: letters, digits, _ . -; unique ignoring case",
    )
    password: str = Field(min_length=8, max_length=128)


class LoginRequest(RequestModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class CharacterCreateRequest(RequestModel):
    name: Annotated[
        str,
        WithJsonSchema(
            {
                "type": "string",
                "pattern": NAME_PATTERN,
                "description": "3-20 characters: a letter, then letters, digits, _ or -",
            }
        ),
    ]
    faction: str = Field(min_length=1, max_length=64)
    character_class: str = Field(
        min_length=1,
        max_length=64,
        validation_alias=AliasChoices("character_class", "class"),
    )

    @field_validator("name", mode="before")
    @classmethod
    def _name_rule(cls, value: object) -> object:
        # The schema documents NAME_PATTERN; the lobby's own check enforces the same
        # pattern (422 invalid_name), so the two cannot drift apart.
        if isinstance(value, str) and not _NAME_RE.fullmatch(value):
            raise LobbyError(
                "a character name is 3-20 characters: a letter, then letters, digits, _ or -",
                code=ErrorCode.INVALID_NAME,
                details={"name": value[:64]},
            )
        return value


class CharacterSelectRequest(RequestModel):
    # a ticket needs both keys: both strings, or neither
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {
                    "required": ["peer_public_key", "box_key"],
                    "properties": {
                        "peer_public_key": {"type": "string"},
                        "box_key": {"type": "string"},
                    },
                },
                {
                    "properties": {
                        "peer_public_key": {"type": "null"},
                        "box_key": {"type": "null"},
                    }
                },
            ]
        },
    )

    character_id: int = Field(ge=1, le=2**63 - 1)
    peer_public_key: str | None = Field(
        default=None,
        pattern=KEY_PATTERN,
        description="the peer node's Ed25519 public key, unpadded base64url (for a ticket)",
    )
    box_key: str | None = Field(
        default=None,
        pattern=KEY_PATTERN,
        description="the peer node's X25519 box key, unpadded base64url",
    )
    endpoints: list[Annotated[str, Field(max_length=64, pattern=IP_ENDPOINT_PATTERN)]] = Field(
        default_factory=list,
        max_length=8,
        description="QUIC endpoints address:port, registered as host candidates: an IPv4 or "
        "[IPv6] literal (names are not addresses); same address policy as candidates",
    )
    candidates: list[Candidate] = Field(
        default_factory=list,
        max_length=8,
        description="typed addresses of the node (host, srflx learned by STUN, relay on TURN). "
        "403 forbidden for an address the lobby does not hand out: unspecified, multicast, "
        "broadcast, link-local, reserved, or loopback unless the lobby runs on loopback",
    )
