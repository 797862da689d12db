"""STUN messages (RFC 8489): a pure, strict codec.

A STUN message is a 20-byte header (type, length, the magic cookie, a 96-bit
transaction id) and a list of type-length-value attributes, each padded to four
bytes. :func:`parse_message` checks the framing and returns a :class:`StunMessage`
whose attributes stay raw bytes until a typed accessor
(:meth:`StunMessage.xor_mapped_address`, :meth:`StunMessage.error_code`, ...)
decodes one; :func:`encode_message` builds a message from raw attribute values
made by the ``*_value`` helpers, optionally ending with MESSAGE-INTEGRITY
(HMAC-SHA1) and FINGERPRINT (CRC-32).

Strictness: every malformed input, to the parser or to an accessor, raises
:class:`~protocol.errors.StunError` (a :class:`~protocol.errors.ProtocolError`), and
nothing else. A FINGERPRINT that does not match, or that is not the last
attribute, is malformed. Attributes after MESSAGE-INTEGRITY other than
MESSAGE-INTEGRITY-SHA256 and FINGERPRINT are dropped, as RFC 8489 section 14.5
requires. :meth:`StunMessage.check_integrity` raises
:class:`~protocol.errors.StunIntegrityError` when the HMAC does not verify.

Credentials: :func:`short_term_key` (the password) and :func:`long_term_key`
(MD5 of ``username:realm:password``). Passwords and usernames are used as UTF-8
without the OpaqueString/SASLprep profile: the credentials this project issues
are ASCII.

Demultiplexing one UDP socket (RFC 7983, RFC 9443): :func:`classify_datagram`
sorts a datagram by its first byte, given whether it came from the TURN server,
because QUIC short headers (first byte 64-127) overlap TURN ChannelData (64-79).

The TURN methods and attributes are defined here (:class:`Method`,
:class:`Attr`); message builders, ChannelData framing and REST credentials live
in :mod:`protocol.turn`. No I/O, no clock.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import ipaddress
import secrets
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum

from protocol.errors import StunError, StunIntegrityError

__all__ = [
    "FINGERPRINT_XOR",
    "HEADER_SIZE",
    "MAGIC_COOKIE",
    "TRANSACTION_ID_SIZE",
    "Address",
    "Attr",
    "Attribute",
    "DatagramKind",
    "Method",
    "StunClass",
    "StunMessage",
    "binding_error",
    "binding_request",
    "binding_success",
    "classify_datagram",
    "decode_xor_address",
    "encode_message",
    "error_code_value",
    "is_stun",
    "long_term_key",
    "new_transaction_id",
    "parse_message",
    "short_term_key",
    "text_value",
    "u32_value",
    "unknown_attributes_value",
    "xor_address_value",
]

MAGIC_COOKIE = 0x2112A442
HEADER_SIZE = 20
TRANSACTION_ID_SIZE = 12
FINGERPRINT_XOR = 0x5354554E
_COOKIE_BYTES = MAGIC_COOKIE.to_bytes(4, "big")
_HEADER = struct.Struct("!HHI12s")
_ATTR_HEADER = struct.Struct("!HH")
_INTEGRITY_SIZE = 20  # HMAC-SHA1
_FAMILY_IPV4 = 0x01
_FAMILY_IPV6 = 0x02
# RFC 8489 section 14: longest USERNAME, and longest REALM / NONCE / SOFTWARE / reason
_MAX_USERNAME = 513
_MAX_TEXT = 763

Address = tuple[str, int]
"""A transport address: (IP address text, port), as ``recvfrom`` gives it (IPv4 or IPv6)."""

Attribute = tuple[int, bytes]
"""A raw attribute: (type, value without padding)."""


class StunClass(IntEnum):
    """The class bits of a STUN message type."""

    REQUEST = 0b00
    INDICATION = 0b01
    SUCCESS = 0b10
    ERROR = 0b11


class Method(IntEnum):
    """STUN (RFC 8489) and TURN (RFC 8656) methods."""

    BINDING = 0x001
    ALLOCATE = 0x003
    REFRESH = 0x004
    SEND = 0x006
    DATA = 0x007
    CREATE_PERMISSION = 0x008
    CHANNEL_BIND = 0x009


class Attr(IntEnum):
    """STUN and TURN attribute types (0x0000-0x7FFF: comprehension-required)."""

    MAPPED_ADDRESS = 0x0001
    USERNAME = 0x0006
    MESSAGE_INTEGRITY = 0x0008
    ERROR_CODE = 0x0009
    UNKNOWN_ATTRIBUTES = 0x000A
    CHANNEL_NUMBER = 0x000C
    LIFETIME = 0x000D
    XOR_PEER_ADDRESS = 0x0012
    DATA = 0x0013
    REALM = 0x0014
    NONCE = 0x0015
    XOR_RELAYED_ADDRESS = 0x0016
    REQUESTED_ADDRESS_FAMILY = 0x0017
    EVEN_PORT = 0x0018
    REQUESTED_TRANSPORT = 0x0019
    DONT_FRAGMENT = 0x001A
    MESSAGE_INTEGRITY_SHA256 = 0x001C
    PASSWORD_ALGORITHM = 0x001D
    USERHASH = 0x001E
    XOR_MAPPED_ADDRESS = 0x0020
    RESERVATION_TOKEN = 0x0022
    PRIORITY = 0x0024
    USE_CANDIDATE = 0x0025
    ADDITIONAL_ADDRESS_FAMILY = 0x8000
    ADDRESS_ERROR_CODE = 0x8001
    PASSWORD_ALGORITHMS = 0x8002
    ALTERNATE_DOMAIN = 0x8003
    ICMP = 0x8004
    SOFTWARE = 0x8022
    ALTERNATE_SERVER = 0x8023
    FINGERPRINT = 0x8028
    ICE_CONTROLLED = 0x8029
    ICE_CONTROLLING = 0x802A


_KNOWN_ATTRS = frozenset(int(a) for a in Attr)
_INTEGRITY = int(Attr.MESSAGE_INTEGRITY)
_INTEGRITY_SHA256 = int(Attr.MESSAGE_INTEGRITY_SHA256)
_FINGERPRINT = int(Attr.FINGERPRINT)
_CLASSES = (StunClass.REQUEST, StunClass.INDICATION, StunClass.SUCCESS, StunClass.ERROR)


class DatagramKind(Enum):
    """What a datagram on the shared UDP socket is (see :func:`classify_datagram`)."""

    STUN = "stun"
    CHANNEL_DATA = "channel_data"
    QUIC = "quic"
    OTHER = "other"


def classify_datagram(data: bytes, *, from_turn_server: bool) -> DatagramKind:
    """Sort a datagram of the node's one UDP socket by RFC 7983 / RFC 9443 first-byte ranges.

    The caller decides ``from_turn_server`` by the source address first, because
    the ranges overlap: 64-79 is TURN ChannelData from the TURN server, but a QUIC
    short header (64-127) from anyone else. From the TURN server: 0-3 is STUN
    (responses, Data indications), 64-79 ChannelData, anything else ``OTHER``.
    From anyone else: 0-3 is STUN (Binding requests and answers), 64-255 QUIC
    (short headers 64-127, long headers 128-255: 192-255 with the fixed bit set,
    128-191 when a peer greases it), anything else ``OTHER``. Empty data is
    ``OTHER``. Whether the bytes really are a well-formed STUN message or QUIC
    packet is for the parser to say.
    """
    if not data:
        return DatagramKind.OTHER
    first = data[0]
    if first <= 3:
        return DatagramKind.STUN
    if from_turn_server:
        return DatagramKind.CHANNEL_DATA if 64 <= first <= 79 else DatagramKind.OTHER
    return DatagramKind.QUIC if first >= 64 else DatagramKind.OTHER


def new_transaction_id() -> bytes:
    """96 random bits for a new transaction (RFC 8489: uniformly random)."""
    return secrets.token_bytes(TRANSACTION_ID_SIZE)


def is_stun(data: bytes) -> bool:
    """Cheap framing check without raising: header bits, length and magic cookie."""
    return (
        len(data) >= HEADER_SIZE
        and data[0] & 0xC0 == 0
        and data[4:8] == _COOKIE_BYTES
        and (len(data) - HEADER_SIZE) % 4 == 0
        and int.from_bytes(data[2:4], "big") == len(data) - HEADER_SIZE
    )


# -- keys ---------------------------------------------------------------------------------


def short_term_key(password: str) -> bytes:
    """The MESSAGE-INTEGRITY key of a short-term credential: the password itself."""
    return password.encode()


def long_term_key(username: str, realm: str, password: str) -> bytes:
    """The MESSAGE-INTEGRITY key of a long-term credential: MD5(username:realm:password)."""
    material = f"{username}:{realm}:{password}".encode()
    return hashlib.md5(material, usedforsecurity=False).digest()


# -- the message --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StunMessage:
    """A parsed STUN message.

    ``attributes`` holds every attribute that counts, in order, values unpadded;
    ``raw`` is the whole message and ``integrity_offset`` where its
    MESSAGE-INTEGRITY attribute starts (None without one), for
    :meth:`check_integrity`.
    """

    method: int
    cls: StunClass
    transaction_id: bytes
    attributes: tuple[Attribute, ...]
    raw: bytes = b""
    integrity_offset: int | None = None

    def get(self, attr: int) -> bytes | None:
        """The value of the first attribute of type ``attr``, or None."""
        for kind, value in self.attributes:
            if kind == attr:
                return value
        return None

    def require(self, attr: int) -> bytes:
        """Like :meth:`get`, but a missing attribute raises :class:`StunError`."""
        value = self.get(attr)
        if value is None:
            raise StunError(f"STUN message lacks attribute {_attr_name(attr)}")
        return value

    def unknown_comprehension_required(self) -> list[int]:
        """Attribute types below 0x8000 this codec does not know (a server answers 420)."""
        return sorted({k for k, _ in self.attributes if k < 0x8000 and k not in _KNOWN_ATTRS})

    # typed accessors: None when absent, StunError when malformed

    def xor_mapped_address(self) -> Address | None:
        return self._xor_address(Attr.XOR_MAPPED_ADDRESS)

    def xor_relayed_address(self) -> Address | None:
        return self._xor_address(Attr.XOR_RELAYED_ADDRESS)

    def xor_peer_address(self) -> Address | None:
        return self._xor_address(Attr.XOR_PEER_ADDRESS)

    def mapped_address(self) -> Address | None:
        value = self.get(Attr.MAPPED_ADDRESS)
        return None if value is None else _decode_address(value, None)

    def error_code(self) -> tuple[int, str] | None:
        """(code 300-699, reason phrase) of ERROR-CODE."""
        value = self.get(Attr.ERROR_CODE)
        if value is None:
            return None
        if len(value) < 4 or value[0] or value[1] or value[2] & 0xF8:
            raise StunError("ERROR-CODE is malformed")
        klass, number = value[2] & 0x07, value[3]
        if not 3 <= klass <= 6 or number > 99:
            raise StunError(f"ERROR-CODE {klass}{number:02d} is out of range")
        return klass * 100 + number, _decode_text(value[4:], "ERROR-CODE reason", _MAX_TEXT)

    def unknown_attributes(self) -> list[int] | None:
        value = self.get(Attr.UNKNOWN_ATTRIBUTES)
        if value is None:
            return None
        if len(value) % 2:
            raise StunError("UNKNOWN-ATTRIBUTES has an odd length")
        return [int.from_bytes(value[i : i + 2], "big") for i in range(0, len(value), 2)]

    def username(self) -> str | None:
        return self._text(Attr.USERNAME, _MAX_USERNAME)

    def realm(self) -> str | None:
        return self._text(Attr.REALM, _MAX_TEXT)

    def nonce(self) -> str | None:
        return self._text(Attr.NONCE, _MAX_TEXT)

    def software(self) -> str | None:
        return self._text(Attr.SOFTWARE, _MAX_TEXT)

    def lifetime(self) -> int | None:
        """Seconds of TURN LIFETIME."""
        value = self.get(Attr.LIFETIME)
        if value is None:
            return None
        if len(value) != 4:
            raise StunError("LIFETIME is not 4 bytes")
        return int.from_bytes(value, "big")

    def channel_number(self) -> int | None:
        """The TURN CHANNEL-NUMBER (0x4000-0x4FFF)."""
        value = self.get(Attr.CHANNEL_NUMBER)
        if value is None:
            return None
        if len(value) != 4:
            raise StunError("CHANNEL-NUMBER is not 4 bytes")
        number = int.from_bytes(value[:2], "big")
        if not 0x4000 <= number <= 0x4FFF:
            raise StunError(f"CHANNEL-NUMBER {number:#06x} is outside 0x4000-0x4FFF")
        return number

    def requested_transport(self) -> int | None:
        """The IP protocol number of TURN REQUESTED-TRANSPORT (17 = UDP)."""
        value = self.get(Attr.REQUESTED_TRANSPORT)
        if value is None:
            return None
        if len(value) != 4:
            raise StunError("REQUESTED-TRANSPORT is not 4 bytes")
        return value[0]

    def data(self) -> bytes | None:
        """The TURN DATA attribute (the payload of Send and Data indications)."""
        return self.get(Attr.DATA)

    def has_integrity(self) -> bool:
        return self.integrity_offset is not None

    def check_integrity(self, key: bytes) -> None:
        """Verify MESSAGE-INTEGRITY with ``key``; raise :class:`StunIntegrityError` if not.

        A message without MESSAGE-INTEGRITY fails too: a caller asks this only of
        messages that must be authenticated.
        """
        offset = self.integrity_offset
        if offset is None:
            raise StunIntegrityError("STUN message has no MESSAGE-INTEGRITY")
        raw = self.raw
        expected = raw[offset + 4 : offset + 4 + _INTEGRITY_SIZE]
        if not hmac.compare_digest(_integrity(raw[:offset], key), expected):
            raise StunIntegrityError("STUN MESSAGE-INTEGRITY does not match")

    def _xor_address(self, attr: Attr) -> Address | None:
        value = self.get(attr)
        return None if value is None else decode_xor_address(value, self.transaction_id)

    def _text(self, attr: Attr, limit: int) -> str | None:
        value = self.get(attr)
        return None if value is None else _decode_text(value, _attr_name(attr), limit)


# -- parsing ------------------------------------------------------------------------------


def parse_message(data: bytes) -> StunMessage:
    """Parse one STUN message; raise :class:`StunError` on any malformed input."""
    if type(data) is not bytes:
        data = bytes(data)
    if len(data) < HEADER_SIZE:
        raise StunError(f"STUN message shorter than its {HEADER_SIZE}-byte header")
    msg_type, length, cookie, transaction_id = _HEADER.unpack_from(data)
    if msg_type & 0xC000:
        raise StunError("STUN message type has its top two bits set")
    if cookie != MAGIC_COOKIE:
        raise StunError("STUN magic cookie mismatch")
    if length % 4:
        raise StunError("STUN message length is not a multiple of 4")
    if HEADER_SIZE + length != len(data):
        raise StunError(
            f"STUN length field says {length} bytes of attributes, got {len(data) - HEADER_SIZE}"
        )
    method = (msg_type & 0x000F) | ((msg_type & 0x00E0) >> 1) | ((msg_type & 0x3E00) >> 2)
    klass = _CLASSES[((msg_type >> 4) & 0x1) | ((msg_type >> 7) & 0x2)]
    attributes: list[Attribute] = []
    integrity_offset: int | None = None
    offset = HEADER_SIZE
    end = len(data)
    while offset < end:
        if end - offset < 4:
            raise StunError("STUN attribute header truncated")
        kind, size = _ATTR_HEADER.unpack_from(data, offset)
        value_at = offset + 4
        next_at = value_at + ((size + 3) & ~3)
        if next_at > end:
            raise StunError(f"STUN attribute {_attr_name(kind)} overruns the message")
        value = data[value_at : value_at + size]
        if kind == _FINGERPRINT:
            if next_at != end:
                raise StunError("STUN FINGERPRINT is not the last attribute")
            _check_fingerprint(data, offset, value)
            attributes.append((kind, value))
        elif integrity_offset is not None and kind != _INTEGRITY_SHA256:
            pass  # RFC 8489 14.5: ignored after MESSAGE-INTEGRITY
        else:
            if kind == _INTEGRITY:
                if size != _INTEGRITY_SIZE:
                    raise StunError("STUN MESSAGE-INTEGRITY is not 20 bytes")
                integrity_offset = offset
            attributes.append((kind, value))
        offset = next_at
    return StunMessage(method, klass, transaction_id, tuple(attributes), data, integrity_offset)


def _check_fingerprint(data: bytes, offset: int, value: bytes) -> None:
    if len(value) != 4:
        raise StunError("STUN FINGERPRINT is not 4 bytes")
    if int.from_bytes(value, "big") != _fingerprint(data[:offset]):
        raise StunError("STUN FINGERPRINT does not match")


def decode_xor_address(value: bytes, transaction_id: bytes) -> Address:
    """Decode an XOR-MAPPED-ADDRESS-shaped value (also XOR-PEER/RELAYED-ADDRESS)."""
    return _decode_address(value, transaction_id)


def _decode_address(value: bytes, transaction_id: bytes | None) -> Address:
    if len(value) < 4:
        raise StunError("STUN address attribute truncated")
    family = value[1]
    port = int.from_bytes(value[2:4], "big")
    raw = value[4:]
    if family == _FAMILY_IPV4:
        if len(raw) != 4:
            raise StunError("STUN IPv4 address attribute is not 8 bytes")
    elif family == _FAMILY_IPV6:
        if len(raw) != 16:
            raise StunError("STUN IPv6 address attribute is not 20 bytes")
    else:
        raise StunError(f"STUN address family {family:#04x} is unknown")
    if transaction_id is not None:
        port ^= MAGIC_COOKIE >> 16
        raw = _xor(raw, _COOKIE_BYTES + transaction_id)
    if len(raw) == 4:
        return f"{raw[0]}.{raw[1]}.{raw[2]}.{raw[3]}", port
    return str(ipaddress.IPv6Address(raw)), port


def _xor(data: bytes, mask: bytes) -> bytes:
    """``data`` XOR the first ``len(data)`` bytes of ``mask``."""
    size = len(data)
    value = int.from_bytes(data, "big") ^ int.from_bytes(mask[:size], "big")
    return value.to_bytes(size, "big")


def _pack_ip(host: str) -> bytes:
    """The packed form of an IPv4 or IPv6 address text; StunError if it is neither."""
    parts = host.split(".")
    if len(parts) == 4:
        try:
            packed = bytes(map(int, parts))
        except ValueError:
            packed = b""
        # the canonical text only: int() also takes " 1", "+1", "01", "1_0"
        if packed and f"{packed[0]}.{packed[1]}.{packed[2]}.{packed[3]}" == host:
            return packed
    try:
        return ipaddress.ip_address(host).packed
    except ValueError as exc:
        raise StunError(f"not an IP address: {host!r}") from exc


def _decode_text(value: bytes, what: str, limit: int) -> str:
    if len(value) > limit:
        raise StunError(f"STUN {what} is over {limit} bytes")
    try:
        return value.decode()
    except UnicodeDecodeError as exc:
        raise StunError(f"STUN {what} is not UTF-8") from exc


# -- encoding -----------------------------------------------------------------------------


def encode_message(
    method: int,
    cls: StunClass,
    transaction_id: bytes,
    attributes: Iterable[Attribute] = (),
    *,
    integrity_key: bytes | None = None,
    fingerprint: bool = False,
) -> bytes:
    """Encode a message; MESSAGE-INTEGRITY (with ``integrity_key``) and FINGERPRINT last.

    Raises :class:`StunError` for a method, transaction id or attribute that
    cannot be encoded.
    """
    if not 0 <= method <= 0xFFF:
        raise StunError(f"STUN method {method:#x} does not fit 12 bits")
    if len(transaction_id) != TRANSACTION_ID_SIZE:
        raise StunError("a STUN transaction id is 12 bytes")
    body = bytearray()
    for kind, value in attributes:
        body += _attribute(kind, value)
    msg_type = (
        (method & 0x000F)
        | ((method & 0x0070) << 1)
        | ((method & 0x0F80) << 2)
        | ((cls & 0x1) << 4)
        | ((cls & 0x2) << 7)
    )
    extra = (4 + _INTEGRITY_SIZE if integrity_key is not None else 0) + (8 if fingerprint else 0)
    if len(body) + extra > 0xFFFF:
        raise StunError("STUN message over 65535 bytes of attributes")

    def header(length: int) -> bytes:
        return _HEADER.pack(msg_type, length, MAGIC_COOKIE, transaction_id)

    if integrity_key is not None:
        mac = hmac.new(integrity_key, header(len(body) + 4 + _INTEGRITY_SIZE), hashlib.sha1)
        mac.update(body)
        body += _ATTR_HEADER.pack(_INTEGRITY, _INTEGRITY_SIZE) + mac.digest()
    if fingerprint:
        crc = binascii.crc32(body, binascii.crc32(header(len(body) + 8))) ^ FINGERPRINT_XOR
        body += _ATTR_HEADER.pack(_FINGERPRINT, 4) + (crc & 0xFFFFFFFF).to_bytes(4, "big")
    return header(len(body)) + body


def _attribute(kind: int, value: bytes) -> bytes:
    if not 0 <= kind <= 0xFFFF:
        raise StunError(f"STUN attribute type {kind} does not fit 16 bits")
    if len(value) > 0xFFFF:
        raise StunError(f"STUN attribute {_attr_name(kind)} is over 65535 bytes")
    return _ATTR_HEADER.pack(kind, len(value)) + value + b"\x00" * (-len(value) % 4)


def _integrity(prefix: bytes, key: bytes) -> bytes:
    """HMAC-SHA1 over ``prefix``, whose header length already counts MESSAGE-INTEGRITY."""
    size = len(prefix) - HEADER_SIZE + 4 + _INTEGRITY_SIZE
    adjusted = prefix[:2] + size.to_bytes(2, "big") + prefix[4:]
    return hmac.new(key, adjusted, hashlib.sha1).digest()


def _fingerprint(prefix: bytes) -> int:
    """CRC-32 XOR 0x5354554E over ``prefix`` with the header length counting FINGERPRINT."""
    size = len(prefix) - HEADER_SIZE + 8
    crc = binascii.crc32(prefix[:2])
    crc = binascii.crc32(size.to_bytes(2, "big"), crc)
    crc = binascii.crc32(memoryview(prefix)[4:], crc)
    return (crc ^ FINGERPRINT_XOR) & 0xFFFFFFFF


def xor_address_value(address: Address, transaction_id: bytes) -> bytes:
    """The value of XOR-MAPPED-ADDRESS / XOR-PEER-ADDRESS / XOR-RELAYED-ADDRESS."""
    host, port = address
    packed = _pack_ip(host)
    if not 0 <= port <= 0xFFFF:
        raise StunError(f"port {port} out of range")
    if len(transaction_id) != TRANSACTION_ID_SIZE:
        raise StunError("a STUN transaction id is 12 bytes")
    family = _FAMILY_IPV4 if len(packed) == 4 else _FAMILY_IPV6
    x_port = port ^ (MAGIC_COOKIE >> 16)
    return (
        bytes((0, family))
        + x_port.to_bytes(2, "big")
        + _xor(packed, _COOKIE_BYTES + transaction_id)
    )


def error_code_value(code: int, reason: str) -> bytes:
    """The value of ERROR-CODE: ``code`` 300-699 and a reason phrase."""
    if not 300 <= code <= 699:
        raise StunError(f"STUN error code {code} is outside 300-699")
    phrase = reason.encode()
    if len(phrase) > _MAX_TEXT:
        raise StunError("STUN error reason is over 763 bytes")
    return bytes((0, 0, code // 100, code % 100)) + phrase


def text_value(text: str, *, limit: int = _MAX_TEXT) -> bytes:
    """USERNAME, REALM, NONCE or SOFTWARE as UTF-8, checked against the RFC's length limit."""
    value = text.encode()
    if len(value) > limit:
        raise StunError(f"STUN text attribute is over {limit} bytes")
    return value


def u32_value(number: int) -> bytes:
    """A 32-bit unsigned attribute value (LIFETIME, PRIORITY, ...)."""
    if not 0 <= number <= 0xFFFFFFFF:
        raise StunError(f"{number} does not fit 32 bits")
    return number.to_bytes(4, "big")


def unknown_attributes_value(types: Sequence[int]) -> bytes:
    """The value of UNKNOWN-ATTRIBUTES (a 420 answer)."""
    return b"".join(t.to_bytes(2, "big") for t in types)


def _attr_name(kind: int) -> str:
    try:
        return Attr(kind).name.replace("_", "-")
    except ValueError:
        return f"{kind:#06x}"


# -- Binding ------------------------------------------------------------------------------


def binding_request(
    transaction_id: bytes, *, software: str | None = None, fingerprint: bool = True
) -> bytes:
    """A Binding request, as a client sends it to learn its server-reflexive address."""
    attrs = [] if software is None else [(int(Attr.SOFTWARE), text_value(software))]
    return encode_message(
        Method.BINDING, StunClass.REQUEST, transaction_id, attrs, fingerprint=fingerprint
    )


def binding_success(
    transaction_id: bytes,
    mapped: Address,
    *,
    software: str | None = None,
    integrity_key: bytes | None = None,
    fingerprint: bool = True,
) -> bytes:
    """A Binding success response carrying XOR-MAPPED-ADDRESS = ``mapped``."""
    attrs: list[Attribute] = [(Attr.XOR_MAPPED_ADDRESS, xor_address_value(mapped, transaction_id))]
    if software is not None:
        attrs.append((Attr.SOFTWARE, text_value(software)))
    return encode_message(
        Method.BINDING,
        StunClass.SUCCESS,
        transaction_id,
        attrs,
        integrity_key=integrity_key,
        fingerprint=fingerprint,
    )


def binding_error(
    transaction_id: bytes,
    code: int,
    reason: str,
    *,
    unknown: Sequence[int] = (),
    software: str | None = None,
    fingerprint: bool = True,
) -> bytes:
    """A Binding error response (``unknown`` fills UNKNOWN-ATTRIBUTES for a 420)."""
    attrs: list[Attribute] = [(Attr.ERROR_CODE, error_code_value(code, reason))]
    if unknown:
        attrs.append((Attr.UNKNOWN_ATTRIBUTES, unknown_attributes_value(unknown)))
    if software is not None:
        attrs.append((Attr.SOFTWARE, text_value(software)))
    return encode_message(
        Method.BINDING, StunClass.ERROR, transaction_id, attrs, fingerprint=fingerprint
    )
