"""The one exception tree of the Shards of Eternity networking layer, and its error codes.

Every error this library raises on purpose derives from :class:`ShardsError`. Errors
of aiohttp, aioquic, zeroconf, SQLAlchemy and cryptography are translated into this
tree at the boundary where they occur, so that a caller needs one ``except`` clause::

    ShardsError
    ├── ProtocolError                  bad bytes, bad JSON, bad message (never raised into a loop)
    │   ├── DecodeError                not JSON / not the binary movement format
    │   ├── InvalidMessageError        JSON, but not a valid message (schema, limits)
    │   ├── UnknownMessageTypeError    a ``type`` this version does not know
    │   ├── VersionMismatchError       incompatible ``version`` (names both versions)
    │   ├── MessageTooLargeError       over the size limit before parsing
    │   ├── StunError                  a malformed STUN/TURN message or ChannelData frame
    │   │   └── StunIntegrityError     MESSAGE-INTEGRITY does not match the key
    │   └── CryptoError
    │       ├── TicketError            a peer ticket that must not be trusted
    │       │   ├── TicketMalformedError   not a ticket at all
    │       │   ├── TicketTamperedError    a field changed after signing (digest mismatch)
    │       │   ├── TicketForgedError      digest intact, signature not the issuer's
    │       │   ├── TicketIssuerError      signed by another lobby key than the trusted one
    │       │   ├── TicketExpiredError     ``now`` is past ``expires_at``
    │       │   └── TicketNotYetValidError ``now`` is before ``issued_at``
    │       ├── ChallengeError         a handshake challenge answer that does not verify
    │       └── SealError              a sealed payload that does not open (wrong key, altered)
    ├── LobbyError                     the master server
    │   ├── StorageError               the database failed or refused
    │   ├── ConfigError                a lobby setting or the world file is unusable
    │   └── GameRuleError              a game rule refused the request (code says which)
    ├── MeshError                      the peer node and the client facade
    │   ├── MeshConfigError            a client/node setting or the installed aioquic is unusable
    │   ├── HandshakeError             a peer failed authentication
    │   ├── PeerUnreachableError       no direct path and no relay reached the peer
    │   ├── NotConnectedError          the call needs a lobby session or a started node
    │   ├── PortInUseError             the UDP port asked for is taken (names it)
    │   └── ApiError                   the lobby answered a request with an error
    └── DiscoveryError                 lobby directory or mDNS discovery failed

Each error carries a stable :class:`ErrorCode`, the value an ``ERROR`` message's
``error_code`` or an HTTP error body's ``code`` holds. Codes are part of the wire
contract: they are never renamed, only added.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

__all__ = [
    "ApiError",
    "ChallengeError",
    "ConfigError",
    "CryptoError",
    "DecodeError",
    "DiscoveryError",
    "ErrorCode",
    "GameRuleError",
    "HandshakeError",
    "InvalidMessageError",
    "LobbyError",
    "MeshConfigError",
    "MeshError",
    "MessageTooLargeError",
    "NotConnectedError",
    "PeerUnreachableError",
    "PortInUseError",
    "ProtocolError",
    "SealError",
    "ShardsError",
    "StorageError",
    "StunError",
    "StunIntegrityError",
    "TicketError",
    "TicketExpiredError",
    "TicketForgedError",
    "TicketIssuerError",
    "TicketMalformedError",
    "TicketNotYetValidError",
    "TicketTamperedError",
    "UnknownMessageTypeError",
    "VersionMismatchError",
]


class ErrorCode(StrEnum):
    """Stable error codes of ``ERROR`` messages and HTTP error bodies.

    Protocol codes describe a message that could not be accepted; the others
    describe a request the lobby or a peer refused.
    """

    # protocol: the message itself
    INVALID_JSON = "invalid_json"
    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_TYPE = "unknown_type"
    VERSION_MISMATCH = "version_mismatch"
    MESSAGE_TOO_LARGE = "message_too_large"
    BAD_DATAGRAM = "bad_datagram"
    # general request outcomes
    BAD_REQUEST = "bad_request"
    VALIDATION_ERROR = "validation_error"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    RATE_LIMITED = "rate_limited"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    INTERNAL_ERROR = "internal_error"
    UNAVAILABLE = "unavailable"
    # authentication and authorization
    UNAUTHORIZED = "unauthorized"
    INVALID_CREDENTIALS = "invalid_credentials"
    ACCOUNT_LOCKED = "account_locked"
    SESSION_EXPIRED = "session_expired"
    FORBIDDEN = "forbidden"
    USERNAME_TAKEN = "username_taken"
    NO_CHARACTER = "no_character"
    # characters
    NAME_TAKEN = "name_taken"
    INVALID_NAME = "invalid_name"
    CHARACTER_LIMIT = "character_limit"
    # world and movement
    INVALID_MOVE = "invalid_move"
    NOT_AT_LOCATION = "not_at_location"
    SHARD_COOLDOWN = "shard_cooldown"
    ALREADY_OWNED = "already_owned"
    # party
    PARTY_FULL = "party_full"
    NOT_PARTY_LEADER = "not_party_leader"
    NOT_IN_PARTY = "not_in_party"
    ALREADY_IN_PARTY = "already_in_party"
    INVITE_EXPIRED = "invite_expired"
    # combat
    NOT_IN_COMBAT = "not_in_combat"
    INVALID_TARGET = "invalid_target"
    ON_COOLDOWN = "on_cooldown"
    # trade
    TRADE_INVALID = "trade_invalid"
    ITEM_NOT_OWNED = "item_not_owned"
    INSUFFICIENT_GOLD = "insufficient_gold"
    # mesh
    HANDSHAKE_FAILED = "handshake_failed"
    PEER_UNREACHABLE = "peer_unreachable"
    SPOOFED_SENDER = "spoofed_sender"
    # combat (added with the lobby game rules)
    INSUFFICIENT_MANA = "insufficient_mana"
    # STUN / TURN (RFC 8489, RFC 8656)
    BAD_STUN = "bad_stun"
    STUN_INTEGRITY = "stun_integrity"


class ShardsError(Exception):
    """Root of every error this library raises on purpose."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def __init__(
        self,
        message: str = "",
        *,
        code: ErrorCode | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message or self.__class__.__doc__ or self.__class__.__name__)
        if code is not None:
            self.code = code
        self.details: dict[str, Any] = dict(details or {})

    @property
    def message(self) -> str:
        return str(self.args[0])


class ProtocolError(ShardsError):
    """A message could not be accepted."""

    code = ErrorCode.INVALID_MESSAGE


class DecodeError(ProtocolError):
    """The bytes are not JSON, or not the binary movement format."""

    code = ErrorCode.INVALID_JSON


class InvalidMessageError(ProtocolError):
    """The JSON is not a valid message of its type."""

    code = ErrorCode.INVALID_MESSAGE


class UnknownMessageTypeError(ProtocolError):
    """The message type is not one this protocol version knows."""

    code = ErrorCode.UNKNOWN_TYPE


class VersionMismatchError(ProtocolError):
    """The peer speaks an incompatible protocol version."""

    code = ErrorCode.VERSION_MISMATCH


class MessageTooLargeError(ProtocolError):
    """The message is over the size limit."""

    code = ErrorCode.MESSAGE_TOO_LARGE


class StunError(ProtocolError):
    """A STUN or TURN message, attribute or ChannelData frame is malformed."""

    code = ErrorCode.BAD_STUN


class StunIntegrityError(StunError):
    """A STUN message's MESSAGE-INTEGRITY is missing or does not match the key."""

    code = ErrorCode.STUN_INTEGRITY


class CryptoError(ProtocolError):
    """A signature, ticket, challenge or sealed payload did not verify."""

    code = ErrorCode.HANDSHAKE_FAILED


class TicketError(CryptoError):
    """A peer ticket that must not be trusted."""


class TicketMalformedError(TicketError):
    """The data is not a peer ticket."""


class TicketTamperedError(TicketError):
    """A ticket field was changed after signing."""


class TicketForgedError(TicketError):
    """The ticket's signature is not the issuer's."""


class TicketIssuerError(TicketError):
    """The ticket was signed by another key than the trusted lobby key."""


class TicketExpiredError(TicketError):
    """The ticket has expired."""


class TicketNotYetValidError(TicketError):
    """The ticket is not valid yet."""


class ChallengeError(CryptoError):
    """A handshake challenge answer did not verify."""


class SealError(CryptoError):
    """A sealed payload did not open: wrong key, or altered."""


class LobbyError(ShardsError):
    """The master server failed or refused."""


class StorageError(LobbyError):
    """The database failed or refused."""


class ConfigError(LobbyError):
    """A lobby setting or the world definition is unusable."""

    code = ErrorCode.BAD_REQUEST


class MeshError(ShardsError):
    """The peer node or the client facade failed."""


class MeshConfigError(MeshError):
    """A client or node setting (an address, a port, an environment variable) is unusable,
    or the installed aioquic is not the version the mesh was built against."""

    code = ErrorCode.BAD_REQUEST


class HandshakeError(MeshError):
    """A peer failed authentication."""

    code = ErrorCode.HANDSHAKE_FAILED


class PeerUnreachableError(MeshError):
    """Neither a direct path nor the relay reached the peer."""

    code = ErrorCode.PEER_UNREACHABLE


class NotConnectedError(MeshError):
    """The call needs a lobby session, a selected character or a started node."""

    code = ErrorCode.UNAUTHORIZED


class PortInUseError(MeshError):
    """The UDP port a node was asked to bind is taken; ``details["port"]`` names it."""

    code = ErrorCode.UNAVAILABLE


class ApiError(MeshError):
    """The lobby answered a request with an error; ``status`` is the HTTP status."""

    def __init__(
        self,
        message: str = "",
        *,
        code: ErrorCode | None = None,
        status: int = 0,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, code=code, details=details)
        self.status = status


class DiscoveryError(ShardsError):
    """Discovery through the lobby directory or mDNS failed."""

    code = ErrorCode.UNAVAILABLE


class GameRuleError(LobbyError):
    """A game rule refused the request; ``code`` names the rule (NOT_AT_LOCATION, ...)."""

    code = ErrorCode.BAD_REQUEST
