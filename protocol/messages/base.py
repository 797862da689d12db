"""The message envelope, the message types and the field types shared by every message.

Every message is a pydantic v2 model deriving from :class:`BaseMessage`: the
envelope fields ``type``, ``message_id``, ``timestamp`` and ``version`` plus its
own fields. Models forbid unknown fields, refuse non-finite floats and bound
every string, list and number, so a validated message is always safe to keep,
log and re-serialize. Field types are strict where lax coercion would hide a
bug (``"5"`` or ``true`` are not integers).
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    Strict,
    StringConstraints,
    field_serializer,
)
from pydantic_core import core_schema

from protocol.version import PROTOCOL_VERSION, VERSION_PATTERN

__all__ = [
    "COORD_LIMIT",
    "MAX_CHAT_LENGTH",
    "MAX_ID",
    "MAX_MESSAGE_SIZE",
    "AnyId",
    "B64",
    "BaseMessage",
    "Channel",
    "ChatText",
    "Count",
    "Details",
    "Finite",
    "Handler",
    "Gold",
    "Id",
    "Level",
    "MessageId",
    "MessageType",
    "Name",
    "Points",
    "RefId",
    "ShortText",
    "StrictModel",
    "Text",
    "Time",
    "Token",
    "new_message_id",
]

Handler = Callable[[Any], Any]
"""``handler(message)`` for messages of one type: a plain function or a coroutine function
(what ``PeerNode.register_handler`` and ``NetworkClient.register_handler`` take)."""

MAX_MESSAGE_SIZE = 64 * 1024
"""Largest serialized message :func:`protocol.deserialize` accepts by default (bytes)."""

MAX_ID = 2**63 - 1
MAX_CHAT_LENGTH = 2000
COORD_LIMIT = 1.0e7
"""Bound of a coordinate or velocity component; far inside float32's exact-exponent range."""

_MAX_DETAIL_NODES = 256
_MAX_DETAIL_DEPTH = 8
_MAX_DETAIL_STR = 1024


class MessageType(StrEnum):
    """Every message type; the value (lowercase name) is the ``type`` on the wire."""

    # authentication
    AUTH_REQUEST = "auth_request"
    AUTH_RESPONSE = "auth_response"
    DISCONNECT = "disconnect"
    # characters
    CHARACTER_LIST = "character_list"
    CHARACTER_SELECT = "character_select"
    CHARACTER_CREATE = "character_create"
    CHARACTER_UPDATE = "character_update"
    CHARACTER_DELETE = "character_delete"
    # movement and location
    MOVE = "move"
    LOCATION_UPDATE = "location_update"
    PLAYER_JOINED_AREA = "player_joined_area"
    PLAYER_LEFT_AREA = "player_left_area"
    POSITION_UPDATE = "position_update"
    # chat
    CHAT = "chat"
    WHISPER = "whisper"
    PARTY_CHAT = "party_chat"
    FACTION_CHAT = "faction_chat"
    WORLD_ANNOUNCEMENT = "world_announcement"
    # party
    PARTY_CREATE = "party_create"
    PARTY_INVITE = "party_invite"
    PARTY_ACCEPT = "party_accept"
    PARTY_DECLINE = "party_decline"
    PARTY_LEAVE = "party_leave"
    PARTY_KICK = "party_kick"
    PARTY_DISBAND = "party_disband"
    PARTY_UPDATE = "party_update"
    # combat
    COMBAT_START = "combat_start"
    COMBAT_ACTION = "combat_action"
    COMBAT_DAMAGE = "combat_damage"
    COMBAT_HEAL = "combat_heal"
    COMBAT_END = "combat_end"
    COMBAT_STATE = "combat_state"
    # world
    WORLD_STATE = "world_state"
    SHARD_CAPTURED = "shard_captured"
    SHARD_STATUS = "shard_status"
    SHARD_CAPTURE = "shard_capture"
    REALITY_SHIFT = "reality_shift"
    AETHERFALL = "aetherfall"
    # trade
    TRADE_REQUEST = "trade_request"
    TRADE_ACCEPT = "trade_accept"
    TRADE_DECLINE = "trade_decline"
    TRADE_UPDATE = "trade_update"
    TRADE_COMPLETE = "trade_complete"
    # mesh
    PEER_HELLO = "peer_hello"
    PEER_PROOF = "peer_proof"
    PEER_WELCOME = "peer_welcome"
    PEER_ACK = "peer_ack"
    PEER_INFO = "peer_info"
    RELAY = "relay"
    # system
    ERROR = "error"
    HEARTBEAT = "heartbeat"
    ACK = "ack"


# Message ids need uniqueness, not secrecy: a PRNG seeded from the OS (and reseeded
# after fork, so two processes never share a sequence) is ~10x cheaper than uuid4().
_rng = random.Random(os.urandom(32))  # noqa: S311
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def _reseed() -> None:
    _rng.seed(os.urandom(32))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed)


def new_message_id() -> str:
    """A fresh random message id: 32 lowercase hex digits, laid out as a UUID version 4."""
    # to_bytes().hex() is the same text as "%032x" at half the cost of formatting a 128-bit int
    return ((_rng.getrandbits(128) & _UUID4_CLEAR) | _UUID4_SET).to_bytes(16, "big").hex()


_REF_PATTERN = r"^[A-Za-z0-9_\-:.]{1,64}$"


class _RefIdSchema:
    """The core schema of :data:`RefId`, all in pydantic-core (no Python call on a string).

    Party, trade and combat ids are strings on the wire; a caller holding an integer
    database id may pass it as is (bool is not an id). The integer bounds are exactly
    the integers whose decimal text matches the pattern (1 to 64 characters), so the
    accepted set is the same as stringifying first and matching after.
    """

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: object, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.union_schema(
            [
                core_schema.str_schema(pattern=_REF_PATTERN, strict=True),
                core_schema.no_info_after_validator_function(
                    str, core_schema.int_schema(strict=True, ge=-(10**63 - 1), le=10**64 - 1)
                ),
            ],
            mode="left_to_right",
            custom_error_type="ref_id",
            custom_error_message=(
                "Input should be an id: 1 to 64 of A-Z a-z 0-9 _ - : . (or an integer)"
            ),
        )


def _check_details(value: dict[str, Any]) -> dict[str, Any]:
    budget = [_MAX_DETAIL_NODES]
    _check_json_value(value, 0, budget)
    return value


def _check_json_value(value: object, depth: int, budget: list[int]) -> None:
    budget[0] -= 1
    if budget[0] < 0:
        raise ValueError(f"details has more than {_MAX_DETAIL_NODES} values")
    if depth > _MAX_DETAIL_DEPTH:
        raise ValueError(f"details nested deeper than {_MAX_DETAIL_DEPTH}")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise ValueError("details integer out of 64-bit range")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("details float is not finite")
        return
    if isinstance(value, str):
        if len(value) > _MAX_DETAIL_STR:
            raise ValueError(f"details string longer than {_MAX_DETAIL_STR}")
        return
    if isinstance(value, list | tuple):
        for item in value:
            _check_json_value(item, depth + 1, budget)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or len(key) > 64:
                raise ValueError("details keys are strings of at most 64 characters")
            _check_json_value(item, depth + 1, budget)
        return
    raise ValueError(f"details value of type {type(value).__name__} is not JSON")


# Field types -----------------------------------------------------------------

Id = Annotated[int, Strict(), Field(ge=0, le=MAX_ID)]
"""A database id (character, item, shard, location, player)."""
Count = Annotated[int, Strict(), Field(ge=0, le=2**31 - 1)]
Points = Annotated[int, Strict(), Field(ge=0, le=1_000_000_000)]
"""Health, mana, damage or heal amounts."""
Level = Annotated[int, Strict(), Field(ge=1, le=1000)]
Gold = Annotated[int, Strict(), Field(ge=0, le=10**15)]
Finite = Annotated[float, Strict(), Field(allow_inf_nan=False, ge=-1e15, le=1e15)]
Time = Annotated[float, Strict(), Field(allow_inf_nan=False, ge=0, le=1e13)]
"""Seconds: a Unix time or a monotonic clock reading, supplied by the caller."""
Name = Annotated[str, Strict(), StringConstraints(min_length=1, max_length=64)]
ShortText = Annotated[str, Strict(), StringConstraints(max_length=256)]
Text = Annotated[str, Strict(), StringConstraints(max_length=1024)]
ChatText = Annotated[str, Strict(), StringConstraints(min_length=1, max_length=MAX_CHAT_LENGTH)]
Channel = Annotated[str, Strict(), StringConstraints(pattern=r"^[a-z0-9_\-]{1,32}$")]
MessageId = Annotated[str, Strict(), StringConstraints(pattern=r"^[A-Za-z0-9_\-:.]{1,64}$")]
RefId = Annotated[str, _RefIdSchema]
"""A party, trade or combat id (a string; an integer is accepted and stringified)."""
AnyId = Annotated[str, Strict(), StringConstraints(min_length=1, max_length=128)]
Token = Annotated[str, Strict(), StringConstraints(min_length=1, max_length=4096)]
B64 = Annotated[str, Strict(), StringConstraints(pattern=r"^[A-Za-z0-9+/=_\-]{0,256}$")]
"""A short base64 (or base64url) value: a key, a nonce, a signature."""
Details = Annotated[dict[str, Any], AfterValidator(_check_details)]
"""A small JSON object: finite numbers, bounded strings, at most 256 values, depth 8."""


class StrictModel(BaseModel):
    """Base of every model (messages and their parts): no unknown fields, no NaN."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        populate_by_name=False,
        validate_default=False,
        cache_strings="keys",
    )


class BaseMessage(StrictModel):
    """The envelope shared by every message.

    ``timestamp`` is set by the I/O layer that sends the message (the protocol
    package never reads a clock); ``version`` is the sender's protocol version.
    """

    type: MessageType
    message_id: MessageId = Field(default_factory=new_message_id)
    timestamp: Time | None = None
    version: Annotated[str, Strict(), StringConstraints(pattern=VERSION_PATTERN)] = PROTOCOL_VERSION

    # pydantic's JSON serializer takes a slow path for an enum-valued Literal (about
    # 1 us per message here); handing it the plain string is several times cheaper.
    @field_serializer("type", when_used="json")
    def _type_as_text(self, value: MessageType) -> str:
        return value._value_
