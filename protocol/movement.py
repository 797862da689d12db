"""The compact binary form of continuous movement (QUIC DATAGRAM payloads).

Layout (little-endian, ``struct``)::

    header  1 byte   high nibble: format version (1); low nibble: kind
                     kind 1 = one update, kind 2 = a batch
    [batch] 1 byte   count, 1..MAX_BATCH
    record  42 bytes character_id u32 | location_id u32 | seq u16 | sent_at f64 |
                     position x,y,z f32 | velocity x,y,z f32

One update is 43 bytes; a batch of ``n`` is ``2 + 42 n`` bytes, at most
``MAX_DATAGRAM_PAYLOAD`` (kept under aioquic's ~1170-byte datagram limit).

Equivalence with the JSON form (``PositionUpdateMessage``): position and velocity
travel as float32 and ``sent_at`` as float64, so
``decode_movement(encode_movement(m))`` equals :func:`quantize_movement` ``(m)`` on
every movement field (``character_id``, ``location_id``, ``position``, ``velocity``,
``sent_at``, ``seq``; see :data:`MOVEMENT_FIELDS`). The envelope is not carried:
a decoded update has a fresh ``message_id``, ``timestamp=None`` and our version.

The decoders raise only :class:`~protocol.errors.DecodeError` (code
``bad_datagram``), whatever the bytes; whatever they return is a valid message
(finite values within the model's bounds).

Sequence numbers are 16-bit and wrap: :func:`seq_newer` compares them with
serial-number arithmetic (RFC 1982): newest wins.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from itertools import chain
from typing import NamedTuple

from pydantic import BaseModel

from protocol.errors import DecodeError, ErrorCode, InvalidMessageError
from protocol.messages.base import _UUID4_CLEAR, _UUID4_SET, COORD_LIMIT
from protocol.messages.base import _rng as _id_rng
from protocol.messages.location import PositionUpdateMessage, Vec3
from protocol.version import PROTOCOL_VERSION

__all__ = [
    "BATCH_HEADER",
    "FORMAT_VERSION",
    "MAX_BATCH",
    "MAX_DATAGRAM_PAYLOAD",
    "MOVEMENT_FIELDS",
    "MovementRecord",
    "RECORD_SIZE",
    "SINGLE_HEADER",
    "SINGLE_SIZE",
    "PositionUpdateMessage",
    "Vec3",
    "decode_movement",
    "decode_movement_any",
    "decode_movement_batch",
    "encode_movement",
    "encode_movement_batch",
    "encode_movement_batches",
    "next_seq",
    "position_update",
    "pack_movement",
    "pack_movement_batch",
    "quantize_movement",
    "seq_newer",
    "unpack_movement",
    "unpack_movement_batch",
]

FORMAT_VERSION = 1
KIND_SINGLE = 1
KIND_BATCH = 2
SINGLE_HEADER = (FORMAT_VERSION << 4) | KIND_SINGLE
BATCH_HEADER = (FORMAT_VERSION << 4) | KIND_BATCH

_RECORD = struct.Struct("<IIHd6f")
_SINGLE = struct.Struct("<BIIHd6f")
_F32 = struct.Struct("<f")
RECORD_SIZE = _RECORD.size
SINGLE_SIZE = _SINGLE.size
MAX_DATAGRAM_PAYLOAD = 1150
MAX_BATCH = (MAX_DATAGRAM_PAYLOAD - 2) // RECORD_SIZE
_BATCH = [struct.Struct("<BB" + "IIHd6f" * n) for n in range(MAX_BATCH + 1)]

MOVEMENT_FIELDS = ("character_id", "location_id", "position", "velocity", "sent_at", "seq")
"""The fields the binary form carries."""

_SENT_AT_LIMIT = 1e13
# The bounds the checks compare with (see _build), each once per value and bound.
_LO = -COORD_LIMIT
_HI = COORD_LIMIT
_T_LO = -_SENT_AT_LIMIT
_T_HI = _SENT_AT_LIMIT
_POSITION_FIELDS = frozenset(("type", *MOVEMENT_FIELDS, "message_id", "version"))
_XYZ = frozenset("xyz")
_ONE_BATCH = _BATCH[1]
_ONE_BATCH_SIZE = _ONE_BATCH.size
_id_bits = _id_rng.getrandbits  # the generator new_message_id draws from (reseeded in place)
_new = object.__new__
# Slot setters of pydantic's BaseModel: building a model this way skips re-validation
# of values the decoder has already checked (three model objects per update).
_set_dict = BaseModel.__dict__["__dict__"].__set__  # object.__setattr__'s end, without its lookup
_set_fields = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__
_POSITION_TYPE = PositionUpdateMessage.model_fields["type"].default
_unpack_record = _RECORD.unpack_from
_pack_single = _SINGLE.pack
_tuple_new = tuple.__new__  # a record from a tuple without MovementRecord.__new__'s Python frame


class MovementRecord(NamedTuple):
    """The raw, validated content of one binary update: the allocation-light form for
    hot paths (interpolation, newest-wins filtering) that need no pydantic model."""

    character_id: int
    location_id: int
    seq: int
    sent_at: float
    px: float
    py: float
    pz: float
    vx: float
    vy: float
    vz: float

    def to_message(self) -> PositionUpdateMessage:
        """The equivalent :class:`PositionUpdateMessage` (fresh ``message_id``); raises
        :class:`DecodeError` if a value is out of the model's bounds (only possible for
        a record built by hand: the decoders check everything)."""
        try:
            floats = [float(v) for v in self[3:]]
        except (TypeError, ValueError) as exc:
            raise _bad(f"movement record value is not a number: {exc}") from exc
        return position_update(self.character_id, self.location_id, self.seq, *floats)

    @classmethod
    def from_message(cls, update: PositionUpdateMessage) -> MovementRecord:
        """The record of ``update`` (values as they are, not yet rounded to float32)."""
        p = update.position
        v = update.velocity
        return cls(
            update.character_id,
            update.location_id,
            update.seq,
            update.sent_at,
            p.x,
            p.y,
            p.z,
            v.x,
            v.y,
            v.z,
        )


def position_update(
    character_id: int,
    location_id: int,
    seq: int,
    sent_at: float,
    px: float,
    py: float,
    pz: float,
    vx: float,
    vy: float,
    vz: float,
) -> PositionUpdateMessage:
    """A :class:`PositionUpdateMessage` (fresh ``message_id``) of plain values, checked
    against the bounds the binary form and the model share, without running pydantic's
    validators: ids ``int`` within 32 bits, ``seq`` 16 bits, the rest finite ``float`` s
    within ``COORD_LIMIT`` (``sent_at``: within 1e13). Raises :class:`DecodeError`
    otherwise. The message equals the validated model of the same values field by field."""
    if not (
        type(character_id) is int
        and type(location_id) is int
        and type(seq) is int
        and 0 <= character_id <= 0xFFFFFFFF
        and 0 <= location_id <= 0xFFFFFFFF
        and 0 <= seq <= 0xFFFF
    ):
        raise _bad("movement ids or seq out of range")
    if not (
        type(sent_at) is float
        and type(px) is float
        and type(py) is float
        and type(pz) is float
        and type(vx) is float
        and type(vy) is float
        and type(vz) is float
    ):
        raise _bad("movement values must be floats")
    return _build(character_id, location_id, seq, sent_at, px, py, pz, vx, vy, vz)


def encode_movement(update: PositionUpdateMessage) -> bytes:
    """One update as a 43-byte datagram payload."""
    p = update.position
    v = update.velocity
    try:
        return _SINGLE.pack(
            SINGLE_HEADER,
            update.character_id,
            update.location_id,
            update.seq,
            update.sent_at,
            p.x,
            p.y,
            p.z,
            v.x,
            v.y,
            v.z,
        )
    except (struct.error, OverflowError, TypeError) as exc:
        raise InvalidMessageError(f"position update not encodable: {exc}") from exc


def decode_movement(data: bytes | bytearray | memoryview) -> PositionUpdateMessage:
    """Decode a single-update payload; raises :class:`DecodeError` on anything else."""
    return _build(*_unpack_record(_single_payload(data), 1))


def pack_movement(record: MovementRecord) -> bytes:
    """:func:`encode_movement` of a :class:`MovementRecord` (same bytes)."""
    try:
        # ten named values and a plain call: a third cheaper than ``pack(header, *record)``
        cid, lid, seq, sent_at, px, py, pz, vx, vy, vz = record
        return _pack_single(SINGLE_HEADER, cid, lid, seq, sent_at, px, py, pz, vx, vy, vz)
    except (struct.error, OverflowError, TypeError, ValueError) as exc:
        raise InvalidMessageError(f"movement record not encodable: {exc}") from exc


def unpack_movement(data: bytes | bytearray | memoryview) -> MovementRecord:
    """Decode a single-update payload to a checked :class:`MovementRecord`; raises
    :class:`DecodeError` on anything else."""
    if type(data) is not bytes or len(data) != SINGLE_SIZE or data[0] != SINGLE_HEADER:
        data = _single_payload(data)  # the same bytes as plain bytes, or the precise error
    values = _unpack_record(data, 1)
    _, _, _, sent_at, px, py, pz, vx, vy, vz = values
    # The bounds check of _build (which see), in line: a call is a tenth of this path.
    if (px >= _LO and px <= _HI and py >= _LO and py <= _HI and pz >= _LO and pz <= _HI
            and vx >= _LO and vx <= _HI and vy >= _LO and vy <= _HI and vz >= _LO and vz <= _HI
            and sent_at >= _T_LO and sent_at <= _T_HI):  # fmt: skip
        return _tuple_new(MovementRecord, values)
    raise _out_of_bounds(sent_at)


def encode_movement_batch(updates: Sequence[PositionUpdateMessage]) -> bytes:
    """Several updates (1..``MAX_BATCH``) in one datagram payload."""
    count = len(updates)
    if count == 1:  # the usual tick: one struct call
        u = updates[0]
        p = u.position
        v = u.velocity
        try:
            return _ONE_BATCH.pack(
                BATCH_HEADER, 1, u.character_id, u.location_id, u.seq, u.sent_at,
                p.x, p.y, p.z, v.x, v.y, v.z,
            )  # fmt: skip
        except (struct.error, OverflowError, TypeError) as exc:
            raise InvalidMessageError(f"position update not encodable: {exc}") from exc
    if not 1 <= count <= MAX_BATCH:
        raise ValueError(f"a movement batch holds 1..{MAX_BATCH} updates, got {count}")
    pack = _RECORD.pack
    parts = [bytes((BATCH_HEADER, count))]
    try:
        for u in updates:
            p = u.position
            v = u.velocity
            parts.append(
                pack(u.character_id, u.location_id, u.seq, u.sent_at, p.x, p.y, p.z, v.x, v.y, v.z)
            )
    except (struct.error, OverflowError, TypeError) as exc:
        raise InvalidMessageError(f"position update not encodable: {exc}") from exc
    return b"".join(parts)


def pack_movement_batch(records: Sequence[MovementRecord]) -> bytes:
    """:func:`encode_movement_batch` of :class:`MovementRecord` s (same bytes), in one
    ``struct`` call."""
    count = len(records)
    if not 1 <= count <= MAX_BATCH:
        raise ValueError(f"a movement batch holds 1..{MAX_BATCH} updates, got {count}")
    try:
        return _BATCH[count].pack(BATCH_HEADER, count, *chain.from_iterable(records))
    except (struct.error, OverflowError, TypeError) as exc:
        raise InvalidMessageError(f"movement record not encodable: {exc}") from exc


def encode_movement_batches(updates: Iterable[PositionUpdateMessage]) -> list[bytes]:
    """Any number of updates as as few batch payloads as the size limit allows."""
    pending = list(updates)
    return [
        encode_movement_batch(pending[i : i + MAX_BATCH]) for i in range(0, len(pending), MAX_BATCH)
    ]


def decode_movement_batch(data: bytes | bytearray | memoryview) -> list[PositionUpdateMessage]:
    """Decode a batch payload; raises :class:`DecodeError` on anything else."""
    if (
        type(data) is bytes
        and len(data) == _ONE_BATCH_SIZE
        and data[0] == BATCH_HEADER
        and data[1] == 1
    ):
        # the usual datagram, a batch of one: straight from the bytes to the message
        # (_build checks the bounds; anything else takes the full path)
        return [_build(*_unpack_record(data, 2))]
    return [_build(*values) for values in _RECORD.iter_unpack(_batch_payload(data)[2:])]


def unpack_movement_batch(data: bytes | bytearray | memoryview) -> list[MovementRecord]:
    """Decode a batch payload to checked records; raises :class:`DecodeError`."""
    records: list[MovementRecord] = []
    append = records.append
    for values in _RECORD.iter_unpack(_batch_payload(data)[2:]):
        _, _, _, sent_at, px, py, pz, vx, vy, vz = values
        # The bounds check of _build (which see), in line: a call per record is a tenth.
        if not (px >= _LO and px <= _HI and py >= _LO and py <= _HI and pz >= _LO and pz <= _HI
                and vx >= _LO and vx <= _HI and vy >= _LO and vy <= _HI and vz >= _LO
                and vz <= _HI and sent_at >= _T_LO and sent_at <= _T_HI):  # fmt: skip
            raise _out_of_bounds(sent_at)
        append(_tuple_new(MovementRecord, values))
    return records


def decode_movement_any(data: bytes | bytearray | memoryview) -> list[PositionUpdateMessage]:
    """Decode either form (single or batch) by its header; raises :class:`DecodeError`."""
    if type(data) is not bytes:
        data = _as_bytes(data)
    if len(data) == 0:
        raise _bad("empty movement datagram")
    header = data[0]
    if header == SINGLE_HEADER:
        return [decode_movement(data)]
    if header == BATCH_HEADER:
        return decode_movement_batch(data)
    raise _bad(_header_problem(header, SINGLE_HEADER))


def seq_newer(a: int, b: int) -> bool:
    """True when 16-bit sequence number ``a`` is newer than ``b`` (wrap-around aware).

    ``a`` is newer when it is 1..32767 steps ahead of ``b`` modulo 65536; at
    exactly 32768 apart neither is newer.
    """
    return 0 < ((a - b) & 0xFFFF) < 0x8000


def next_seq(seq: int) -> int:
    """The sequence number after ``seq`` (wraps 65535 -> 0)."""
    return (seq + 1) & 0xFFFF


def quantize_movement(update: PositionUpdateMessage) -> PositionUpdateMessage:
    """``update`` with position and velocity rounded to float32, as the binary form carries them."""
    return update.model_copy(
        update={
            "position": _quantize_vec(update.position),
            "velocity": _quantize_vec(update.velocity),
        }
    )


# Helpers ----------------------------------------------------------------------


def _as_bytes(data: object) -> bytes:
    # Any bytes-like buffer (also strided or multi-byte-item memoryviews) as plain bytes.
    if isinstance(data, bytearray):
        return bytes(data)
    if isinstance(data, memoryview):
        return data.tobytes()
    raise _bad(f"a movement datagram is bytes, not {type(data).__name__}")


def _bad(text: str) -> DecodeError:
    return DecodeError(text, code=ErrorCode.BAD_DATAGRAM)


def _single_payload(data: object) -> bytes:
    """``data`` as plain bytes when it is the bytes of one update (values not yet checked);
    raises :class:`DecodeError` naming what is wrong otherwise."""
    if type(data) is not bytes:
        data = _as_bytes(data)
    if len(data) != SINGLE_SIZE:
        raise _bad(f"a single movement update is {SINGLE_SIZE} bytes, got {len(data)}")
    if data[0] != SINGLE_HEADER:
        raise _bad(_header_problem(data[0], SINGLE_HEADER))
    return data


def _batch_payload(data: object) -> bytes:
    """``data`` as plain bytes when it is a batch's header, count and that many records
    (values not yet checked); raises :class:`DecodeError` naming what is wrong otherwise."""
    if type(data) is not bytes:
        data = _as_bytes(data)
    size = len(data)
    if size < 2:
        raise _bad("a movement batch needs a header and a count")
    header = data[0]
    count = data[1]
    if header != BATCH_HEADER:
        raise _bad(_header_problem(header, BATCH_HEADER))
    if not 1 <= count <= MAX_BATCH:
        raise _bad(f"a movement batch holds 1..{MAX_BATCH} updates, says {count}")
    if size != 2 + count * RECORD_SIZE:
        raise _bad(f"a batch of {count} is {2 + count * RECORD_SIZE} bytes, got {size}")
    return data


def _out_of_bounds(sent_at: float) -> DecodeError:
    """The error for values that failed a bounds check: ``sent_at`` 's, else a coordinate's."""
    if not -_SENT_AT_LIMIT <= sent_at <= _SENT_AT_LIMIT:
        return _bad("movement sent_at not finite or out of range")
    return _bad("movement coordinate not finite or out of range")


def _header_problem(header: int, expected: int) -> str:
    if header >> 4 != FORMAT_VERSION:
        return f"movement format version {header >> 4} is not {FORMAT_VERSION}"
    return f"movement header 0x{header:02x} where 0x{expected:02x} was expected"


def _quantize_vec(vec: Vec3) -> Vec3:
    f = _F32
    return Vec3(
        x=f.unpack(f.pack(vec.x))[0], y=f.unpack(f.pack(vec.y))[0], z=f.unpack(f.pack(vec.z))[0]
    )


def _build(
    cid: int,
    lid: int,
    seq: int,
    sent_at: float,
    px: float,
    py: float,
    pz: float,
    vx: float,
    vy: float,
    vz: float,
) -> PositionUpdateMessage:
    """The message of these values, built without pydantic's validators; raises
    :class:`DecodeError` unless every float is within its bound (the one bounds check
    of every path to a message; its callers have checked the ints' types and ranges,
    or read them from the fixed-width fields of the binary form).

    Each value is compared with each bound on its own (``lo <= x <= hi`` chained, or with
    ``-lim`` computed in place, costs a third more); NaN fails every comparison, so NaN
    and the infinities are refused too. unpack_movement and unpack_movement_batch run the
    same check in line. The two Vec3 and the message id (new_message_id's) are made in
    line: one Python call per message, twice per update (send and receive)."""
    if not (px >= _LO and px <= _HI and py >= _LO and py <= _HI and pz >= _LO and pz <= _HI
            and vx >= _LO and vx <= _HI and vy >= _LO and vy <= _HI and vz >= _LO and vz <= _HI
            and sent_at >= _T_LO and sent_at <= _T_HI):  # fmt: skip
        raise _out_of_bounds(sent_at)
    position: Vec3 = _new(Vec3)
    _set_dict(position, {"x": px, "y": py, "z": pz})
    _set_fields(position, set(_XYZ))
    _set_extra(position, None)
    _set_private(position, None)
    velocity: Vec3 = _new(Vec3)
    _set_dict(velocity, {"x": vx, "y": vy, "z": vz})
    _set_fields(velocity, set(_XYZ))
    _set_extra(velocity, None)
    _set_private(velocity, None)
    msg: PositionUpdateMessage = _new(PositionUpdateMessage)
    _set_dict(
        msg,
        {
            "type": _POSITION_TYPE,
            "message_id": ((_id_bits(128) & _UUID4_CLEAR) | _UUID4_SET).to_bytes(16, "big").hex(),
            "timestamp": None,
            "version": PROTOCOL_VERSION,
            "character_id": cid,
            "location_id": lid,
            "position": position,
            "velocity": velocity,
            "sent_at": sent_at,
            "seq": seq,
        },
    )
    _set_fields(msg, set(_POSITION_FIELDS))
    _set_extra(msg, None)
    _set_private(msg, None)
    return msg
