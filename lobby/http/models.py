"""Request and response bodies of the core REST API (pydantic v2).

The same models validate requests, serialize responses and generate the
OpenAPI document (:mod:`lobby.http.openapi`). Requests forbid unknown fields.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from lobby.characters import NAME_PATTERN
from protocol.errors import ErrorCode, LobbyError

__all__ = [
    "CharacterCreateRequest",
    "CharacterDeleteResponse",
    "CharacterListResponse",
    "CharacterOut",
    "CharacterSelectRequest",
    "CharacterSelectResponse",
    "ErrorBody",
    "LoginRequest",
    "LoginResponse",
    "LogoutResponse",
    "RegisterRequest",
    "RegisterResponse",
    "RequestModel",
    "StatusResponse",
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


class ErrorBody(BaseModel):
    """Every error answer."""

    code: ErrorCode
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class RegisterRequest(RequestModel):
    username: str = Field(
        min_length=3,
        max_length=32,
        pattern=USERNAME_PATTERN,
        description="3-32 characters: letters, digits, _ . -; unique ignoring case",
    )
    password: str = Field(min_length=8, max_length=128)


class RegisterResponse(BaseModel):
    account_id: int
    username: str


class LoginRequest(RequestModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class LoginResponse(BaseModel):
    token: str = Field(description="bearer token: 'Authorization: Bearer <token>'")
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the scheme name, not a secret
    account_id: int
    username: str
    is_admin: bool
    expires_at: float = Field(description="unix seconds; slides on every call or WS message")
    session_ttl: float
    ws_path: str = "/ws"


class LogoutResponse(BaseModel):
    ok: bool = True


class CharacterOut(BaseModel):
    id: int
    name: str
    faction: str
    character_class: str
    level: int
    experience: int
    health: int
    max_health: int
    mana: int
    max_mana: int
    location_id: int
    gold: int
    created_at: float


class CharacterListResponse(BaseModel):
    characters: list[CharacterOut]
    limit: int = Field(description="most characters an account may hold")


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
        description="QUIC endpoints host:port (hostname, IPv4 or [IPv6]; port 1-65535)",
    )


class CharacterSelectResponse(BaseModel):
    character: CharacterOut
    ticket: str | None = Field(
        default=None, description="lobby-signed peer ticket (when peer keys were sent)"
    )
    ticket_expires_at: float | None = None
    peer_id: str | None = None
    lobby_public_key: str = Field(description="Ed25519, unpadded base64url")


class CharacterDeleteResponse(BaseModel):
    ok: bool = True
    character_id: int


class StatusResponse(BaseModel):
    status: Literal["ok"] = "ok"
    name: str
    protocol_version: str
    server_version: str
    time: float
    uptime: float
    players_online: int = Field(description="sessions with a selected character online")
    connections: int
    database: str
    lobby_public_key: str = Field(description="Ed25519 ticket key, unpadded base64url")
    lobby_peer_id: str
    relayed_messages: int = Field(
        default=0, description="RELAY envelopes forwarded since start (lobby.services.directory)"
    )
    ws_encodings: list[str] = Field(
        default_factory=lambda: ["json"],
        description="frame encodings of /ws?encoding=...: json, and fernet when configured",
    )
