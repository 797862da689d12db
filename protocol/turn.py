"""TURN (RFC 8656) messages, ChannelData framing and time-limited REST credentials.

Pure builders over :mod:`protocol.stun`: a client allocates a relay
(:func:`allocate_request`), keeps it (:func:`refresh_request`), lets peers in
(:func:`create_permission_request`), binds a channel (:func:`channel_bind_request`)
and exchanges data either as Send/Data indications (:func:`send_indication`,
:func:`data_indication`) or as 4-byte-header ChannelData frames
(:func:`encode_channel_data`, :func:`parse_channel_data` or, without the frame object,
:func:`read_channel_data`). Every parse error is a
:class:`~protocol.errors.StunError`.

Authentication is the long-term credential mechanism: the first Allocate goes
without credentials, the server answers 401 with REALM and NONCE, and every
later request carries USERNAME, REALM, NONCE and MESSAGE-INTEGRITY keyed by
:class:`LongTermCredentials` (438 Stale Nonce: take the new nonce and resend).

Credentials are the "TURN REST API" scheme coturn implements with
``use-auth-secret``: username ``"<unix expiry>:<id>"``, password
``base64(HMAC-SHA1(secret, username))``. The lobby mints them with
:func:`turn_rest_credentials` (``now`` passed in), so clients never hold the
long-lived secret; :func:`verify_turn_rest_credentials` checks them as the TURN
server does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from protocol.errors import StunError, StunIntegrityError
from protocol.stun import (
    Address,
    Attr,
    Attribute,
    Method,
    StunClass,
    StunMessage,
    encode_message,
    long_term_key,
    text_value,
    u32_value,
    xor_address_value,
)

__all__ = [
    "CHANNEL_MAX",
    "CHANNEL_MIN",
    "REQUESTED_TRANSPORT_UDP",
    "Allocation",
    "ChannelData",
    "LongTermCredentials",
    "TurnRestCredentials",
    "TurnUrl",
    "allocate_request",
    "allocation_from",
    "channel_bind_request",
    "create_permission_request",
    "data_indication",
    "encode_channel_data",
    "parse_channel_data",
    "parse_turn_url",
    "read_channel_data",
    "refresh_request",
    "send_indication",
    "turn_rest_credentials",
    "turn_rest_password",
    "verify_turn_rest_credentials",
]

REQUESTED_TRANSPORT_UDP = 17
CHANNEL_MIN = 0x4000
CHANNEL_MAX = 0x4FFF
_CHANNEL_HEADER = 4
_CHANNEL_DATA_HEADER = struct.Struct("!HH")  # channel number, data length


@dataclass(frozen=True, slots=True)
class LongTermCredentials:
    """USERNAME / REALM / NONCE and the MESSAGE-INTEGRITY key of a long-term credential."""

    username: str
    realm: str
    nonce: str
    key: bytes

    @classmethod
    def from_password(
        cls, username: str, password: str, realm: str, nonce: str
    ) -> LongTermCredentials:
        """The credentials after a 401 named ``realm`` and ``nonce``."""
        return cls(username, realm, nonce, long_term_key(username, realm, password))

    def with_nonce(self, nonce: str) -> LongTermCredentials:
        """The same credentials with the fresh nonce of a 438 Stale Nonce answer."""
        return LongTermCredentials(self.username, self.realm, nonce, self.key)

    def attributes(self) -> list[Attribute]:
        return [
            (Attr.USERNAME, text_value(self.username, limit=513)),
            (Attr.REALM, text_value(self.realm)),
            (Attr.NONCE, text_value(self.nonce)),
        ]


def _request(
    method: Method,
    transaction_id: bytes,
    attributes: list[Attribute],
    credentials: LongTermCredentials | None,
) -> bytes:
    if credentials is None:
        return encode_message(method, StunClass.REQUEST, transaction_id, attributes)
    return encode_message(
        method,
        StunClass.REQUEST,
        transaction_id,
        attributes + credentials.attributes(),
        integrity_key=credentials.key,
    )


def allocate_request(
    transaction_id: bytes,
    credentials: LongTermCredentials | None = None,
    *,
    lifetime: int | None = None,
    dont_fragment: bool = False,
) -> bytes:
    """Allocate a UDP relay (without ``credentials``: the probe the server answers 401)."""
    attrs: list[Attribute] = [(Attr.REQUESTED_TRANSPORT, bytes((REQUESTED_TRANSPORT_UDP, 0, 0, 0)))]
    if lifetime is not None:
        attrs.append((Attr.LIFETIME, u32_value(lifetime)))
    if dont_fragment:
        attrs.append((Attr.DONT_FRAGMENT, b""))
    return _request(Method.ALLOCATE, transaction_id, attrs, credentials)


def refresh_request(
    transaction_id: bytes, credentials: LongTermCredentials, *, lifetime: int
) -> bytes:
    """Refresh the allocation for ``lifetime`` seconds (0 deletes it)."""
    return _request(
        Method.REFRESH, transaction_id, [(Attr.LIFETIME, u32_value(lifetime))], credentials
    )


def create_permission_request(
    transaction_id: bytes, credentials: LongTermCredentials, peers: Sequence[Address]
) -> bytes:
    """Install (or refresh, 300 s) permissions for the IP addresses of ``peers``."""
    if not peers:
        raise StunError("CreatePermission needs at least one peer address")
    attrs: list[Attribute] = [
        (Attr.XOR_PEER_ADDRESS, xor_address_value(peer, transaction_id)) for peer in peers
    ]
    return _request(Method.CREATE_PERMISSION, transaction_id, attrs, credentials)


def channel_bind_request(
    transaction_id: bytes, credentials: LongTermCredentials, channel: int, peer: Address
) -> bytes:
    """Bind ``channel`` (0x4000-0x4FFF) to ``peer`` (also installs its permission)."""
    _check_channel(channel)
    attrs: list[Attribute] = [
        (Attr.CHANNEL_NUMBER, channel.to_bytes(2, "big") + b"\x00\x00"),
        (Attr.XOR_PEER_ADDRESS, xor_address_value(peer, transaction_id)),
    ]
    return _request(Method.CHANNEL_BIND, transaction_id, attrs, credentials)


def send_indication(
    transaction_id: bytes, peer: Address, data: bytes, *, dont_fragment: bool = False
) -> bytes:
    """A Send indication: the server relays ``data`` to ``peer`` (no credentials)."""
    attrs: list[Attribute] = [
        (Attr.XOR_PEER_ADDRESS, xor_address_value(peer, transaction_id)),
        (Attr.DATA, data),
    ]
    if dont_fragment:
        attrs.append((Attr.DONT_FRAGMENT, b""))
    return encode_message(Method.SEND, StunClass.INDICATION, transaction_id, attrs)


def data_indication(transaction_id: bytes, peer: Address, data: bytes) -> bytes:
    """A Data indication, as the server sends what ``peer`` sent to the relayed address."""
    attrs: list[Attribute] = [
        (Attr.XOR_PEER_ADDRESS, xor_address_value(peer, transaction_id)),
        (Attr.DATA, data),
    ]
    return encode_message(Method.DATA, StunClass.INDICATION, transaction_id, attrs)


@dataclass(frozen=True, slots=True)
class Allocation:
    """What an Allocate success response grants."""

    relayed: Address
    mapped: Address | None
    lifetime: int


def allocation_from(message: StunMessage) -> Allocation:
    """Read an Allocate success response; :class:`StunError` if it lacks what RFC 8656 says."""
    if message.method != Method.ALLOCATE or message.cls != StunClass.SUCCESS:
        raise StunError("not an Allocate success response")
    relayed = message.xor_relayed_address()
    lifetime = message.lifetime()
    if relayed is None or lifetime is None:
        raise StunError("Allocate success lacks XOR-RELAYED-ADDRESS or LIFETIME")
    return Allocation(relayed, message.xor_mapped_address(), lifetime)


# -- ChannelData --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelData:
    """One ChannelData frame: the channel number and the application data."""

    channel: int
    data: bytes


def _check_channel(channel: int) -> None:
    if not CHANNEL_MIN <= channel <= CHANNEL_MAX:
        raise StunError(f"TURN channel {channel:#x} is outside 0x4000-0x4FFF")


def encode_channel_data(channel: int, data: bytes, *, pad: bool = False) -> bytes:
    """A ChannelData frame (``pad``: to a multiple of 4, as TCP requires; UDP may skip it)."""
    _check_channel(channel)
    size = len(data)
    if size > 0xFFFF:
        raise StunError("ChannelData payload is over 65535 bytes")
    header = _CHANNEL_DATA_HEADER.pack(channel, size)
    if pad and size % 4:
        return b"".join((header, data, b"\x00" * (-size % 4)))
    return header + data


def read_channel_data(frame: bytes) -> tuple[int, bytes]:
    """``(channel, data)`` of a ChannelData frame: :func:`parse_channel_data` without the
    object, for the relay's per-datagram path; raises the same :class:`StunError`."""
    size = len(frame)
    if size < _CHANNEL_HEADER:
        raise StunError("ChannelData shorter than its 4-byte header")
    channel, length = _CHANNEL_DATA_HEADER.unpack_from(frame)
    _check_channel(channel)
    extra = size - _CHANNEL_HEADER - length
    if extra:
        if extra < 0:
            raise StunError(f"ChannelData says {length} bytes, has {size - _CHANNEL_HEADER}")
        if extra != -length % 4:
            raise StunError("ChannelData has trailing bytes beyond its padding")
    return channel, bytes(frame[_CHANNEL_HEADER : _CHANNEL_HEADER + length])


def parse_channel_data(frame: bytes) -> ChannelData:
    """Parse a ChannelData frame; :class:`StunError` unless exactly one frame (+ padding)."""
    return ChannelData(*read_channel_data(frame))


# -- TURN server URIs ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TurnUrl:
    """A parsed ``turn[s]:host[:port][?transport=udp|tcp]`` URI (RFC 7065)."""

    secure: bool
    host: str
    port: int
    transport: str


def parse_turn_url(url: str) -> TurnUrl:
    """Parse a TURN URI; the port defaults to 3478 (``turns``: 5349), the transport to
    UDP (``turns``: TCP). Raises :class:`StunError` for anything else."""
    scheme, sep, rest = url.partition(":")
    if not sep or scheme not in ("turn", "turns"):
        raise StunError(f"{url[:80]!r} is not a turn: or turns: URI")
    where, _, query = rest.partition("?")
    secure = scheme == "turns"
    transport = "tcp" if secure else "udp"
    if query:
        key, _, value = query.partition("=")
        if key != "transport" or value not in ("udp", "tcp"):
            raise StunError(f"{url[:80]!r}: only ?transport=udp|tcp is known")
        transport = value
    if where.startswith("["):
        host, bracket, port_text = where[1:].partition("]")
        if not bracket or (port_text and not port_text.startswith(":")):
            raise StunError(f"{url[:80]!r}: a bad [IPv6] host")
        port_text = port_text[1:]
    else:
        host, _, port_text = where.partition(":")
    if not host:
        raise StunError(f"{url[:80]!r} names no host")
    port = 5349 if secure else 3478
    if port_text:
        if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise StunError(f"{url[:80]!r}: a bad port")
        port = int(port_text)
    return TurnUrl(secure, host, port, transport)


# -- TURN REST credentials ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TurnRestCredentials:
    """Time-limited TURN credentials: valid until ``expires_at`` (unix seconds)."""

    username: str
    password: str
    expires_at: int


def _secret_bytes(secret: str | bytes) -> bytes:
    value = secret.encode() if isinstance(secret, str) else bytes(secret)
    if not value:
        raise StunError("the TURN shared secret must not be empty")
    return value


def turn_rest_password(secret: str | bytes, username: str) -> str:
    """``base64(HMAC-SHA1(secret, username))``, coturn's ``use-auth-secret`` password."""
    mac = hmac.new(_secret_bytes(secret), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


def turn_rest_credentials(
    secret: str | bytes, user_id: str, *, now: float, ttl: float
) -> TurnRestCredentials:
    """Credentials for ``user_id`` valid ``ttl`` seconds from ``now`` (expiry rounded up)."""
    if ttl <= 0 or not math.isfinite(ttl) or not math.isfinite(now):
        raise StunError("TURN credential ttl must be a positive finite number of seconds")
    if not user_id or ":" in user_id:
        raise StunError("a TURN credential id must be non-empty and hold no ':'")
    expires_at = math.ceil(now + ttl)
    username = f"{expires_at}:{user_id}"
    text_value(username, limit=513)
    return TurnRestCredentials(username, turn_rest_password(secret, username), expires_at)


def verify_turn_rest_credentials(
    secret: str | bytes, username: str, password: str, *, now: float
) -> int:
    """Check credentials as a TURN server does; return the expiry or raise.

    :class:`StunIntegrityError` when the password is not the secret's, or the
    expiry has passed; :class:`StunError` when the username is not the scheme's.
    """
    stamp, sep, _ = username.partition(":")
    if not sep or not stamp.isdigit() or not stamp.isascii():
        raise StunError("a TURN REST username is '<unix expiry>:<id>'")
    expected = turn_rest_password(secret, username)
    if not hmac.compare_digest(expected.encode(), password.encode()):
        raise StunIntegrityError("TURN credential password does not match the secret")
    expires_at = int(stamp)
    if now >= expires_at:
        raise StunIntegrityError("TURN credentials have expired")
    return expires_at
