"""The lobby's REST response bodies: what the lobby sends and a client reads, defined once.

The lobby's routes build these models and serialize them; ``NetworkClient``
parses the same models from the answers (:func:`parse_body`), so a field
renamed on one side is a type error on the other. Field names are the JSON
keys of the wire format. The OpenAPI document of the lobby is generated from
the same classes.

Reading is lenient where writing is strict: unknown keys (a newer lobby) are
ignored, so adding a field never breaks an older client. Every body also reads
like the JSON object it was (``body["id"]``, ``body.get("name")``), as code
written against plain dicts expects.

=====================================  ======================================
``POST /api/auth/register``            :class:`RegisterResponse`
``POST /api/auth/login``               :class:`LoginResponse`
``POST /api/auth/logout``              :class:`LogoutResponse`
``GET /api/characters``                :class:`CharacterListResponse`
``POST /api/characters``               :class:`CharacterOut`
``POST /api/characters/select``        :class:`CharacterSelectResponse`
``DELETE /api/characters/{id}``        :class:`CharacterDeleteResponse`
``GET /api/status``                    :class:`StatusResponse`
``GET /api/world/state``               :class:`WorldStateOut`
``GET /api/world/map``                 :class:`WorldMapOut`
``GET /api/world/shards``              :class:`ShardsOut`
``GET /api/world/events``              :class:`EventsOut`
``GET /api/party``, ``/api/party/*``   :class:`PartyOut`, :class:`OkOut`
``GET /api/inventory``                 :class:`InventoryOut`
``GET /api/peers/{id}``, ``?name=``    :class:`PeerInfoOut`
``POST /api/peers/{id}/pair``          :class:`PeerInfoOut`
``GET /api/turn/credentials``          :class:`IceServersOut`
every error                            :class:`ErrorBody`
=====================================  ======================================
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError

from protocol.candidates import Candidate, PairingReason
from protocol.errors import DecodeError, ErrorCode

__all__ = [
    "AetherfallOut",
    "Body",
    "CharacterDeleteResponse",
    "CharacterListResponse",
    "CharacterOut",
    "CharacterSelectResponse",
    "ErrorBody",
    "EventOut",
    "EventsOut",
    "IceServersOut",
    "InventoryOut",
    "ItemOut",
    "LocationOut",
    "LoginResponse",
    "LogoutResponse",
    "OkOut",
    "PartyInviteOut",
    "PartyMemberOut",
    "PartyOut",
    "PeerInfoOut",
    "RegisterResponse",
    "ShardOut",
    "ShardsOut",
    "StatusResponse",
    "WorldMapOut",
    "WorldStateOut",
    "parse_body",
]

B = TypeVar("B", bound=BaseModel)


class Body(BaseModel):
    """Base of response bodies: typed fields, plus read access by JSON key.

    ``body["key"]`` is ``body.key`` for a declared field (``KeyError``
    otherwise) and ``body.get("key", default)`` never raises, so code that
    read the JSON object as a dict keeps working.
    """

    def __getitem__(self, key: str) -> Any:
        if key not in type(self).model_fields:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """The field ``key``, or ``default`` when the body has no such field."""
        if key not in type(self).model_fields:
            return default
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in type(self).model_fields


def parse_body(model: type[B], data: object, *, what: str) -> B:
    """``data`` (decoded JSON) as ``model``; raises :class:`DecodeError` naming ``what``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise DecodeError(
            f"{what}: the answer does not match {model.__name__} ({where}: {first['msg']})"
        ) from None


# -- errors ---------------------------------------------------------------------------------


class ErrorBody(Body):
    """Every error answer (HTTP 4xx/5xx)."""

    code: ErrorCode
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


# -- auth -----------------------------------------------------------------------------------


class RegisterResponse(Body):
    account_id: int
    username: str


class LoginResponse(Body):
    token: str = Field(description="bearer token: 'Authorization: Bearer <token>'")
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the scheme name, not a secret
    account_id: int
    username: str
    is_admin: bool
    expires_at: float = Field(description="unix seconds; slides on every call or WS message")
    session_ttl: float
    ws_path: str = "/ws"


class LogoutResponse(Body):
    ok: bool = True


# -- characters -----------------------------------------------------------------------------


class CharacterOut(Body):
    """A character as its owner sees it."""

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


class CharacterListResponse(Body):
    characters: list[CharacterOut]
    limit: int = Field(description="most characters an account may hold")


class CharacterSelectResponse(Body):
    character: CharacterOut
    ticket: str | None = Field(
        default=None, description="lobby-signed peer ticket (when peer keys were sent)"
    )
    ticket_expires_at: float | None = None
    peer_id: str | None = None
    lobby_public_key: str = Field(description="Ed25519, unpadded base64url")
    lobby_accepted_keys: list[str] = Field(
        default_factory=list,
        description="other lobby keys whose tickets peers accept too (a key rotation)",
    )


class CharacterDeleteResponse(Body):
    ok: bool = True
    character_id: int


class StatusResponse(Body):
    status: Literal["ok"] = "ok"
    name: str
    protocol_version: str
    server_version: str
    time: float
    uptime: float
    players_online: int = Field(
        description="sessions with a selected character online (every lobby process of a cluster)"
    )
    connections: int = Field(description="open WebSocket connections of this lobby process")
    database: str
    lobby_public_key: str = Field(description="Ed25519 ticket key, unpadded base64url")
    lobby_accepted_keys: list[str] = Field(
        default_factory=list,
        description="other Ed25519 keys (unpadded base64url) whose tickets peers accept too: "
        "the old or the next key of a rotation",
    )
    lobby_peer_id: str
    relayed_messages: int = Field(
        default=0, description="RELAY envelopes forwarded since start (the lobby's relay)"
    )
    ws_encodings: list[str] = Field(
        default_factory=lambda: ["json"],
        description="frame encodings of /ws?encoding=...: json, and fernet when configured",
    )


# -- world ----------------------------------------------------------------------------------


class ShardOut(Body):
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


class ShardsOut(Body):
    shards: list[ShardOut]
    faction_shards: dict[str, int] = Field(description="shards held per faction")


class AetherfallOut(Body):
    seed: int
    at: float
    ends_at: float
    epicentre_id: int
    epicentre_name: str
    struck_location_ids: list[int]
    damage: int
    released_shard_ids: list[int]


class EventOut(Body):
    id: int
    event_type: str
    description: str
    data: dict[str, Any] | None = None
    timestamp: float


class WorldStateOut(Body):
    current_reality: str
    realities: list[str]
    faction_shards: dict[str, int]
    shards: list[ShardOut]
    aetherfall_active: bool
    aetherfall: AetherfallOut | None = Field(default=None, description="the active Aetherfall")
    next_aetherfall_at: float
    online_players: int
    recent_events: list[EventOut] = Field(description="newest first")


class EventsOut(Body):
    events: list[EventOut] = Field(description="newest first")
    next_before: int | None = Field(
        default=None, description="pass as ?before= for the next page (None: no more)"
    )


class LocationOut(Body):
    """A place on the world map and where one can go from it (``MOVE`` targets)."""

    id: int
    name: str
    description: str = ""
    neighbours: list[int] = Field(description="ids of the locations one MOVE away")
    safe: bool = Field(default=False, description="combat cannot start here")
    shard_ids: list[int] = Field(default_factory=list, description="Crystal Shards standing here")
    players: int = Field(default=0, description="characters online here now")


class WorldMapOut(Body):
    """The whole world map: every location with its exits."""

    name: str = Field(description="the world's name")
    start_location_id: int = Field(description="where new characters start")
    locations: list[LocationOut] = Field(description="by id")

    def location(self, location_id: int) -> LocationOut | None:
        """The location ``location_id``, or None."""
        return next((loc for loc in self.locations if loc.id == location_id), None)


# -- parties --------------------------------------------------------------------------------


class PartyMemberOut(Body):
    character_id: int
    name: str
    joined_at: float
    is_leader: bool
    online: bool = False
    location_id: int | None = None


class PartyInviteOut(Body):
    character_id: int
    invited_by: int
    expires_at: float


class PartyOut(Body):
    party_id: str
    name: str | None = None
    leader_id: int
    size_limit: int
    members: list[PartyMemberOut]
    invites: list[PartyInviteOut]


class OkOut(Body):
    ok: bool = True


# -- inventory ------------------------------------------------------------------------------


class ItemOut(Body):
    item_id: int = Field(description="unique id of this item")
    template_id: int
    name: str
    kind: str


class InventoryOut(Body):
    character_id: int
    gold: int
    items: list[ItemOut]


# -- peers ----------------------------------------------------------------------------------


class PeerInfoOut(Body):
    """One directory entry (the fields of a ``PEER_INFO`` message).

    Addresses (``candidates``, ``endpoints``) are filled only when the lobby
    paired the asker with this peer (``paired``); otherwise the entry is the
    peer's identity alone (its ticket names no address either).
    """

    character_id: int
    character_name: str
    ticket: str = Field(description="lobby-signed peer ticket (identity and keys, no address)")
    endpoints: list[str] = Field(
        default_factory=list, description="the candidates as host:port (empty unless paired)"
    )
    candidates: list[Candidate] = Field(
        default_factory=list, description="typed addresses, best first (empty unless paired)"
    )
    paired: bool = Field(default=False, description="the lobby pairs the asker with this peer")
    pairing: PairingReason | None = Field(
        default=None, description="why they are paired: location, party or whisper"
    )
    pairing_id: str | None = Field(
        default=None, description="the id both sides' PEER_INFO of this pairing carry"
    )
    faction: str | None = None
    location_id: int | None = None
    node_id: str | None = Field(default=None, description="peer id of the ticket's public key")
    public_key: str | None = Field(default=None, description="Ed25519, unpadded base64url")
    online: bool = True
    level: int | None = None


# -- NAT traversal --------------------------------------------------------------------------


class IceServersOut(Body):
    """The STUN and TURN servers a node should use, with time-limited TURN credentials.

    TURN credentials follow the "TURN REST API" scheme (coturn ``use-auth-secret``):
    ``username`` is ``"<unix expiry>:<character id>"`` and ``password`` is
    ``base64(HMAC-SHA1(secret, username))``; the shared secret never leaves the lobby.
    Without a configured TURN server, ``turn_urls`` is empty and there are no credentials.
    """

    stun_urls: list[str] = Field(description="stun:host:port URIs (RFC 7064), best first")
    turn_urls: list[str] = Field(
        default_factory=list, description="turn:/turns: URIs (RFC 7065) of the operator's relays"
    )
    username: str | None = Field(default=None, description="TURN username: '<expiry>:<id>'")
    password: str | None = Field(default=None, description="TURN password (HMAC of the username)")
    expires_at: int | None = Field(default=None, description="unix seconds the credentials end")
    ttl: float | None = Field(default=None, description="their lifetime in seconds")
