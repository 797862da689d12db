"""The binary movement codec's checks, path by path: every decoder (single, batch of one,
longer batches; bytes and other buffers; records and models) and the builders refuse
every out-of-bounds value with the same error, and accept the bounds themselves."""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

import pytest

from protocol import COORD_LIMIT, DecodeError, ErrorCode, InvalidMessageError
from protocol import movement as mv
from protocol.movement import MovementRecord

__all__: list[str] = []

GOOD = MovementRecord(42, 7, 9, 12345.678, 101.5, 20.25, -3.75, 1.0, 0.0, 0.5)
FLOATS = ("sent_at", "px", "py", "pz", "vx", "vy", "vz")
_F32_ABOVE = 10000001.0  # the next float32 past the bound
assert COORD_LIMIT == 1e7 and struct.unpack("<f", struct.pack("<f", _F32_ABOVE))[0] == _F32_ABOVE
SENT_AT_LIMIT = 1e13

COORD_MESSAGE = "movement coordinate not finite or out of range"
SENT_AT_MESSAGE = "movement sent_at not finite or out of range"

_PAST = math.nextafter(SENT_AT_LIMIT, math.inf)
# (slot, value, sent_at): each float slot out of bounds; a coordinate also beside a sent_at
# on either of its bounds (still the coordinate's error)
HOSTILE = [
    *(("sent_at", v, v) for v in (math.nan, math.inf, -math.inf, _PAST, -_PAST, 1e300)),
    *((slot, v, sent_at) for slot in FLOATS[1:]
      for v in (math.nan, math.inf, -math.inf, _F32_ABOVE, -_F32_ABOVE, 1e30)
      for sent_at in (GOOD.sent_at, SENT_AT_LIMIT, -SENT_AT_LIMIT)),
]  # fmt: skip

Decoder = Callable[[Any], object]
SINGLE_DECODERS: list[Decoder] = [mv.unpack_movement, mv.decode_movement, mv.decode_movement_any]
BATCH_DECODERS: list[Decoder] = [
    mv.unpack_movement_batch,
    mv.decode_movement_batch,
    mv.decode_movement_any,
]
BUFFERS: list[Callable[[bytes], Any]] = [bytes, bytearray, memoryview]


def _record(slot: str, value: float) -> MovementRecord:
    return GOOD._replace(**{slot: value})  # type: ignore[arg-type]


def _raw_single(record: MovementRecord) -> bytes:
    """The bytes of ``record`` as one update, whatever its values (``pack_movement`` would
    refuse a float32 overflow, so the float fields are written as raw bit patterns)."""
    return bytes((mv.SINGLE_HEADER,)) + _raw_record(record)


def _raw_record(record: MovementRecord) -> bytes:
    cid, lid, seq, sent_at, *floats = record
    f32 = [_f32_bits(f) for f in floats]
    return struct.pack("<IIHd6I", cid, lid, seq, sent_at, *f32)


def _f32_bits(value: float) -> int:
    if math.isnan(value):
        return 0x7FC00000
    if abs(value) > 3.4028234663852886e38:  # past float32: its infinity of that sign
        return 0xFF800000 if value < 0 else 0x7F800000
    return int(struct.unpack("<I", struct.pack("<f", value))[0])


def _raw_batch(records: list[MovementRecord]) -> bytes:
    return bytes((mv.BATCH_HEADER, len(records))) + b"".join(_raw_record(r) for r in records)


def _refused(decode: Decoder, data: object, message: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode(data)
    assert info.value.code is ErrorCode.BAD_DATAGRAM
    assert str(info.value) == message, decode


@pytest.mark.parametrize(("slot", "value", "sent_at"), HOSTILE)
def test_every_path_refuses_every_out_of_bounds_value(
    slot: str, value: float, sent_at: float
) -> None:
    bad = _record(slot, value)._replace(sent_at=sent_at)
    message = SENT_AT_MESSAGE if slot == "sent_at" else COORD_MESSAGE
    single = _raw_single(bad)
    batches = [
        _raw_batch([bad]),  # the usual datagram: its own fast path
        _raw_batch([bad, GOOD, GOOD]),
        _raw_batch([GOOD, GOOD, bad]),
    ]
    for buffer in BUFFERS:
        for decode in SINGLE_DECODERS:
            _refused(decode, buffer(single), message)
        for data in batches:
            for decode in BATCH_DECODERS:
                _refused(decode, buffer(data), message)
    # the builders: plain values and a record made by hand
    _refused(lambda r: mv.position_update(*r), bad, message)
    _refused(MovementRecord.to_message, bad, message)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_every_path_accepts_values_on_the_bounds(sign: float) -> None:
    edge = MovementRecord(0xFFFFFFFF, 0, 0xFFFF, sign * SENT_AT_LIMIT, *(sign * COORD_LIMIT,) * 6)
    assert mv.unpack_movement(mv.pack_movement(edge)) == edge
    assert MovementRecord.from_message(mv.decode_movement(mv.pack_movement(edge))) == edge
    for count in (1, 3):
        data = mv.pack_movement_batch([edge] * count)
        assert mv.unpack_movement_batch(data) == [edge] * count
        for buffer in BUFFERS:
            decoded = mv.decode_movement_batch(buffer(data))
            assert [MovementRecord.from_message(m) for m in decoded] == [edge] * count
    assert MovementRecord.from_message(mv.position_update(*edge)) == edge
    assert MovementRecord.from_message(edge.to_message()) == edge


SINGLE = mv.pack_movement(GOOD)
ONE = mv.pack_movement_batch([GOOD])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "a single movement update is 43 bytes, got 0"),
        (SINGLE[:-1], "a single movement update is 43 bytes, got 42"),
        (SINGLE + b"\x00", "a single movement update is 43 bytes, got 44"),
        (b"\x21" + SINGLE[1:], "movement format version 2 is not 1"),
        (b"\x12" + SINGLE[1:], "movement header 0x12 where 0x11 was expected"),
    ],
)
def test_single_structure_errors(data: bytes, message: str) -> None:
    for buffer in BUFFERS:
        _refused(mv.unpack_movement, buffer(data), message)
        _refused(mv.decode_movement, buffer(data), message)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x12", "a movement batch needs a header and a count"),
        (b"\x22" + ONE[1:], "movement format version 2 is not 1"),
        (b"\x11" + ONE[1:], "movement header 0x11 where 0x12 was expected"),
        (b"\x12\x00" + ONE[2:], f"a movement batch holds 1..{mv.MAX_BATCH} updates, says 0"),
        (b"\x12\x02" + ONE[2:], "a batch of 2 is 86 bytes, got 44"),
        (ONE + b"\x00", "a batch of 1 is 44 bytes, got 45"),
    ],
)
def test_batch_structure_errors(data: bytes, message: str) -> None:
    for buffer in BUFFERS:
        _refused(mv.unpack_movement_batch, buffer(data), message)
        _refused(mv.decode_movement_batch, buffer(data), message)


@pytest.mark.parametrize(
    "record",
    [
        GOOD._replace(character_id=-1),
        GOOD._replace(location_id=2**32),
        GOOD._replace(seq=0x10000),
        GOOD._replace(sent_at="soon"),  # type: ignore[arg-type]
        GOOD._replace(px=1e39),  # past float32
        GOOD._replace(vz=None),  # type: ignore[arg-type]
        tuple.__new__(MovementRecord, tuple(GOOD)[:9]),
        tuple.__new__(MovementRecord, (*GOOD, 0.0)),
    ],
)
def test_pack_movement_refuses_what_it_cannot_encode(record: MovementRecord) -> None:
    with pytest.raises(InvalidMessageError, match="^movement record not encodable: "):
        mv.pack_movement(record)


def test_pack_movement_is_encode_movement() -> None:
    update = GOOD.to_message()
    assert mv.pack_movement(GOOD) == mv.encode_movement(update) == _raw_single(GOOD)
    assert mv.unpack_movement(mv.pack_movement(GOOD)) == MovementRecord.from_message(
        mv.decode_movement(mv.encode_movement(update))
    )
