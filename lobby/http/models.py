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
from protocol.candidates import MAX_CANDIDATES, Candidate
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

_H = "[0-9A-Fa-f]{1,4}"
_IPV6 = "|".join(
    (
        f"(?:{_H}:){{7}}{_H}",
        f"(?:{_H}:){{1,7}}:",
        f"(?:{_H}:){{1,6}}:{_H}",
        f"(?:{_H}:){{1,5}}(?::{_H}){{1,2}}",
        f"(?:{_H}:){{1,4}}(?::{_H}){{1,3}}",
        f"(?:{_H}:){{1,3}}(?::{_H}){{1,4}}",
        f"(?:{_H}:){{1,2}}(?::{_H}){{1,5}}",
        f"{_H}:(?::{_H}){{1,6}}",
        f":(?:(?::{_H}){{1,7}}|:)",
    )
)
_PORT = "(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
ENDPOINT_PATTERN = (
    rf"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{{0,251}}[A-Za-z0-9])?|\[(?:{_IPV6})\]):{_PORT}$"
)
"""A peer endpoint ``host:port``: every string it matches is one a peer ticket accepts."""
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
    endpoints: list[Annotated[str, Field(max_length=128, pattern=ENDPOINT_PATTERN)]] = Field(
        default_factory=list,
        max_length=8,
        description="QUIC endpoints host:port: registered as host candidates, so an IPv4 or "
        "[IPv6] literal (a hostname is refused); same address rules as candidates",
    )
    candidates: list[Candidate] = Field(
        default_factory=list,
        max_length=MAX_CANDIDATES,
        description="typed addresses of the node (host, srflx learned by STUN, relay on TURN); "
        "no unspecified, multicast, link-local or (unless the lobby runs on loopback) loopback",
    )
