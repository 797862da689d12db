"""Request bodies of the core REST API (pydantic v2).

The same models validate requests and generate the OpenAPI document
(:mod:`lobby.http.openapi`); requests forbid unknown fields. The response
bodies, which clients read too, are defined in :mod:`protocol.rest`.
"""

from __future__ import annotations

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

__all__ = [
    "CharacterCreateRequest",
    "CharacterSelectRequest",
    "LoginRequest",
    "RegisterRequest",
    "RequestModel",
    "USERNAME_PATTERN",
]

USERNAME_PATTERN = r"^[A-Za-z0-9_.-]{3,32}$"


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
    name: str = Field(min_length=1, max_length=64, description="3-20: a letter, then [A-Za-z0-9_-]")
    faction: str = Field(min_length=1, max_length=64)
    character_class: str = Field(
        min_length=1,
        max_length=64,
        validation_alias=AliasChoices("character_class", "class"),
    )


class CharacterSelectRequest(RequestModel):
    character_id: int = Field(ge=1, le=2**63 - 1)
    peer_public_key: str | None = Field(
        default=None,
        min_length=43,
        max_length=43,
        description="the peer node's Ed25519 public key, unpadded base64url (for a ticket)",
    )
    box_key: str | None = Field(
        default=None,
        min_length=43,
        max_length=43,
        description="the peer node's X25519 box key, unpadded base64url",
    )
    endpoints: list[str] = Field(
        default_factory=list, max_length=8, description="QUIC endpoints host:port"
    )
