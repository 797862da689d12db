"""The binary movement codec: layout, round trips, batches, sequence numbers, bad bytes."""

from __future__ import annotations

import math
import struct
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import (
    COORD_LIMIT,
    DecodeError,
    ErrorCode,
    PositionUpdateMessage,
    Vec3,
    create_position_update,
    deserialize,
    serialize,
)
from protocol import movement as mv
from protocol.movement import (
    MAX_BATCH,
    MOVEMENT_FIELDS,
    MovementRecord,
    decode_movement,
    decode_movement_any,
    decode_movement_batch,
    encode_movement,
    encode_movement_batch,
    encode_movement_batches,
    next_seq,
    pack_movement,
    quantize_movement,
    seq_newer,
    unpack_movement,
    unpack_movement_batch,
)

__all__: list[str] = []

coord = st.floats(min_value=-COORD_LIMIT, max_value=COORD_LIMIT, allow_nan=False)
vec = st.builds(Vec3, x=coord, y=coord, z=coord)
updates = st.builds(
    PositionUpdateMessage,
    character_id=st.integers(0, 2**32 - 1),
    location_id=st.integers(0, 2**32 - 1),
    position=vec,
    velocity=vec,
    sent_at=st.floats(min_value=-1e13, max_value=1e13, allow_nan=False),
    seq=st.integers(0, 0xFFFF),
)


def _movement_fields(msg: PositionUpdateMessage) -> dict[str, object]:
    return msg.model_dump(include=set(MOVEMENT_FIELDS))


def _sample(seq: int = 1, character_id: int = 42) -> PositionUpdateMessage:
    return create_position_update(
        character_id, 7, (100.5, 200.3, 50.0), (1.0, 0.0, 0.5), sent_at=1234.000123, seq=seq
    )


def test_layout_and_sizes() -> None:
    data = encode_movement(_sample())
    assert len(data) == mv.SINGLE_SIZE == 43
    assert data[0] == 0x11  # format version 1, kind single
    assert struct.unpack_from("<IIHd", data, 1) == (42, 7, 1, 1234.000123)
    batch = encode_movement_batch([_sample(i) for i in range(3)])
    assert batch[:2] == bytes((0x12, 3)) and len(batch) == 2 + 3 * mv.RECORD_SIZE
    full = encode_movement_batch([_sample(i) for i in range(MAX_BATCH)])
    assert len(full) <= mv.MAX_DATAGRAM_PAYLOAD < 1170


@settings(max_examples=150, deadline=None)
@given(updates)
def test_round_trip_equals_float32_quantized(update: PositionUpdateMessage) -> None:
    decoded = decode_movement(encode_movement(update))
    assert _movement_fields(decoded) == _movement_fields(quantize_movement(update))
    assert decoded.sent_at == update.sent_at  # float64: exact
    assert decoded.timestamp is None and decoded.message_id
    # the decoded message is a valid model: the JSON twin round-trips and re-validates
    assert deserialize(serialize(decoded)) == decoded
    assert PositionUpdateMessage.model_validate(decoded.model_dump()) == decoded
    # float32 precision: relative error at most 2**-24 per component
    for a, b in ((update.position, decoded.position), (update.velocity, decoded.velocity)):
        for axis in "xyz":
            x, y = getattr(a, axis), getattr(b, axis)
            assert math.isclose(x, y, rel_tol=2**-23, abs_tol=1e-38)
    # quantizing is idempotent and exact for the binary form
    again = decode_movement(encode_movement(decoded))
    assert _movement_fields(again) == _movement_fields(decoded)


@settings(max_examples=60, deadline=None)
@given(st.lists(updates, min_size=1, max_size=MAX_BATCH))
def test_batch_round_trip(batch: list[PositionUpdateMessage]) -> None:
    decoded = decode_movement_batch(encode_movement_batch(batch))
    assert [_movement_fields(d) for d in decoded] == [
        _movement_fields(quantize_movement(u)) for u in batch
    ]
    assert decode_movement_any(encode_movement_batch(batch)) == decoded or all(
        _movement_fields(a) == _movement_fields(b)
        for a, b in zip(decode_movement_any(encode_movement_batch(batch)), decoded, strict=True)
    )
    assert [tuple(r) for r in unpack_movement_batch(encode_movement_batch(batch))] == [
        tuple(MovementRecord.from_message(d)) for d in decoded
    ]
    records = [MovementRecord.from_message(u) for u in batch]
    assert mv.pack_movement_batch(records) == encode_movement_batch(batch)


def test_records_match_models() -> None:
    update = _sample()
    record = MovementRecord.from_message(update)
    assert pack_movement(record) == encode_movement(update)
    unpacked = unpack_movement(encode_movement(update))
    assert _movement_fields(unpacked.to_message()) == _movement_fields(quantize_movement(update))
    with pytest.raises(DecodeError):
        record._replace(px=math.nan).to_message()
    for bad in (
        {"character_id": -1},
        {"location_id": 2**32},
        {"seq": 70000},
        {"seq": True},
        {"sent_at": "soon"},
        {"vz": 1e8},
    ):
        with pytest.raises(DecodeError):
            record._replace(**bad).to_message()
    as_ints = record._replace(px=1, sent_at=2).to_message()
    assert as_ints.position.x == 1.0 and type(as_ints.position.x) is float
    assert deserialize(serialize(as_ints)) == as_ints


def test_batches_split_at_the_limit() -> None:
    many = [_sample(i, character_id=i) for i in range(2 * MAX_BATCH + 3)]
    payloads = encode_movement_batches(many)
    assert len(payloads) == 3
    out = [m for p in payloads for m in decode_movement_batch(p)]
    assert [m.character_id for m in out] == list(range(2 * MAX_BATCH + 3))
    assert encode_movement_batches([]) == []
    with pytest.raises(ValueError):
        encode_movement_batch([])
    with pytest.raises(ValueError):
        encode_movement_batch(many)
    with pytest.raises(ValueError):
        mv.pack_movement_batch([])


def test_decode_any_dispatches_on_header() -> None:
    single = encode_movement(_sample())
    assert [m.seq for m in decode_movement_any(single)] == [1]
    batch = encode_movement_batch([_sample(5), _sample(6)])
    assert [m.seq for m in decode_movement_any(batch)] == [5, 6]


def _corrupt(data: bytes, offset: int, fmt: str, value: float) -> bytes:
    buf = bytearray(data)
    struct.pack_into(fmt, buf, offset, value)
    return bytes(buf)


GOOD = encode_movement(create_position_update(1, 2, (1.0, 2.0, 3.0), sent_at=5.0, seq=3))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x11",
        GOOD[:-1],
        GOOD + b"\x00",
        b"\x21" + GOOD[1:],  # format version 2
        b"\x01" + GOOD[1:],  # format version 0
        b"\x12" + GOOD[1:],  # batch header on a single
        b"\x13" + GOOD[1:],  # unknown kind
        _corrupt(GOOD, 19, "<f", math.nan),
        _corrupt(GOOD, 23, "<f", math.inf),
        _corrupt(GOOD, 27, "<f", -math.inf),
        _corrupt(GOOD, 31, "<f", 1e30),
        _corrupt(GOOD, 11, "<d", math.nan),
        _corrupt(GOOD, 11, "<d", 1e300),
    ],
)
def test_bad_single_raises_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        decode_movement(data)
    assert info.value.code is ErrorCode.BAD_DATAGRAM
    with pytest.raises(DecodeError):
        unpack_movement(data)
    with pytest.raises(DecodeError):
        decode_movement_batch(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\x12",
        b"\x12\x00",
        b"\x12\x01",
        bytes((0x12, 2)) + GOOD[1:],  # count says 2, one record
        bytes((0x12, MAX_BATCH + 1)) + GOOD[1:] * (MAX_BATCH + 1),
        bytes((0x12, 1)) + _corrupt(GOOD, 19, "<f", math.nan)[1:],
        bytes((0x22, 1)) + GOOD[1:],
    ],
)
def test_bad_batch_raises_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_movement_batch(data)
    with pytest.raises(DecodeError):
        decode_movement_any(data)


def test_memoryview_and_bytearray_inputs() -> None:
    assert decode_movement(bytearray(GOOD)).seq == 3
    assert decode_movement(memoryview(GOOD)).seq == 3
    interleaved = bytes(b for byte in GOOD for b in (byte, 0))
    strided = memoryview(interleaved)[::2]
    assert not strided.c_contiguous
    assert decode_movement(strided).seq == 3
    assert decode_movement_any(strided)[0].seq == 3


@pytest.mark.parametrize("data", [None, "x" * 43, 43, [0x11] * 43])
def test_non_bytes_raise_decode_error(data: object) -> None:
    for decoder in (decode_movement, decode_movement_batch, decode_movement_any, unpack_movement):
        with pytest.raises(DecodeError):
            decoder(data)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("a", "b", "newer"),
    [
        (1, 0, True),
        (0, 1, False),
        (5, 5, False),
        (0, 0xFFFF, True),  # wrapped
        (0xFFFF, 0, False),
        (10, 0xFFF0, True),
        (0x7FFF, 0, True),
        (0x8000, 0, False),  # exactly half way: neither
        (0, 0x8000, False),
        (0x8001, 0, False),
    ],
)
def test_seq_newer(a: int, b: int, newer: bool) -> None:
    assert seq_newer(a, b) is newer


@given(st.integers(0, 0xFFFF), st.integers(1, 0x7FFF))
@settings(max_examples=200, deadline=None)
def test_seq_newer_properties(s: int, step: int) -> None:
    later = (s + step) & 0xFFFF
    assert seq_newer(later, s)
    assert not seq_newer(s, later)
    assert seq_newer(next_seq(s), s)
    assert not seq_newer(s, s)


def test_next_seq_wraps() -> None:
    assert next_seq(0) == 1
    assert next_seq(0xFFFF) == 0


# The built-once fast paths: a message made without pydantic's validators must be the
# validated model, and hostile values must be refused by them as by the model ----------


def _same_model(fast: PositionUpdateMessage, slow: PositionUpdateMessage) -> None:
    """``fast`` is ``slow`` in every field and in pydantic's own state (but its id)."""
    assert fast == slow.model_copy(update={"message_id": fast.message_id})
    assert fast.model_dump(exclude={"message_id"}) == slow.model_dump(exclude={"message_id"})
    assert fast.model_fields_set == slow.model_fields_set | {"message_id", "type", "version"}
    for got, want in ((fast.position, slow.position), (fast.velocity, slow.velocity)):
        assert type(got) is Vec3 and got.model_fields_set == {"x", "y", "z"}
        assert got.__pydantic_extra__ is None and got.__pydantic_private__ is None
        assert got == want
    assert fast.__pydantic_extra__ is None and fast.__pydantic_private__ is None
    assert PositionUpdateMessage.model_validate(fast.model_dump()) == fast
    assert deserialize(serialize(fast)) == fast


plain = st.floats(min_value=-COORD_LIMIT, max_value=COORD_LIMIT, allow_nan=False)


@given(
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, 0xFFFF),
    st.floats(min_value=-1e13, max_value=1e13, allow_nan=False),
    st.tuples(plain, plain, plain),
    st.tuples(plain, plain, plain),
)
@settings(max_examples=200, deadline=None)
def test_position_update_is_the_validated_model(
    cid: int, lid: int, seq: int, sent_at: float, pos: tuple[float, ...], vel: tuple[float, ...]
) -> None:
    fast = mv.position_update(cid, lid, seq, sent_at, *pos, *vel)
    slow = PositionUpdateMessage(
        character_id=cid,
        location_id=lid,
        position=Vec3(x=pos[0], y=pos[1], z=pos[2]),
        velocity=Vec3(x=vel[0], y=vel[1], z=vel[2]),
        sent_at=sent_at,
        seq=seq,
    )
    _same_model(fast, slow)


BAD_VALUES = [
    {"character_id": -1},
    {"character_id": 2**32},
    {"character_id": True},
    {"location_id": 2**32},
    {"location_id": 1.0},
    {"seq": 0x10000},
    {"seq": -1},
    {"sent_at": 1e14},
    {"sent_at": math.nan},
    *({slot: value} for slot in ("px", "py", "pz", "vx", "vy", "vz") for value in (
        math.nan, math.inf, -math.inf, COORD_LIMIT * 1.5, -COORD_LIMIT * 1.5)),
]  # fmt: skip


@pytest.mark.parametrize("bad", BAD_VALUES)
def test_position_update_refuses_what_the_model_refuses(bad: dict[str, object]) -> None:
    good = {"character_id": 1, "location_id": 2, "seq": 3, "sent_at": 4.0}
    good |= dict.fromkeys(("px", "py", "pz", "vx", "vy", "vz"), 0.5)
    values = good | bad
    with pytest.raises(DecodeError) as info:
        mv.position_update(**values)  # type: ignore[arg-type]
    assert info.value.code is ErrorCode.BAD_DATAGRAM
    with pytest.raises(ValueError):  # pydantic's ValidationError
        PositionUpdateMessage(
            character_id=values["character_id"],
            location_id=values["location_id"],
            seq=values["seq"],
            sent_at=values["sent_at"],
            position={k: values[f"p{k}"] for k in "xyz"},
            velocity={k: values[f"v{k}"] for k in "xyz"},
        )


def test_position_update_takes_only_plain_floats() -> None:
    """An int or a float subclass (numpy's float64) is not what the fast path checks: it
    refuses it, and the factory leaves it to the model."""

    class Wide(float):
        pass

    for odd in (1, Wide(1.0)):
        with pytest.raises(DecodeError):
            mv.position_update(1, 2, 3, 4.0, odd, 0.0, 0.0, 0.0, 0.0, 0.0)  # type: ignore[arg-type]
        built = create_position_update(1, 2, (odd, 0.0, 0.0), sent_at=4.0)  # type: ignore[arg-type]
        assert type(built.position.x) is float and built.position.x == 1.0


def test_built_messages_have_distinct_uuid4_ids() -> None:
    ids = {
        create_position_update(1, 2, (0.0, 0.0, 0.0), sent_at=1.0).message_id for _ in range(500)
    }
    ids |= {
        decode_movement_batch(encode_movement_batch([_sample()]))[0].message_id for _ in range(500)
    }
    assert len(ids) == 1000
    for text in ids:
        assert len(text) == 32 and text == text.lower()
        parsed = uuid.UUID(hex=text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and parsed.hex == text


@given(updates)
@settings(max_examples=200, deadline=None)
def test_one_update_batch_fast_path_matches_the_general_one(update: PositionUpdateMessage) -> None:
    """A batch of one (the usual datagram) is encoded and decoded in line: same bytes, same
    message as the record path."""
    data = encode_movement_batch([update])
    assert data == mv.pack_movement_batch([MovementRecord.from_message(update)])
    (fast,) = decode_movement_batch(data)
    (record,) = unpack_movement_batch(data)
    _same_model(fast, record.to_message())
    assert _movement_fields(fast) == _movement_fields(quantize_movement(update))


ONE = encode_movement_batch([create_position_update(1, 2, (1.0, 2.0, 3.0), sent_at=5.0, seq=3)])


@pytest.mark.parametrize(
    "data",
    [
        bytes((0x12, 0)) + ONE[2:],  # a batch of one that says none
        bytes((0x12, 2)) + ONE[2:],
        bytes((0x12, 255)) + ONE[2:],
        bytes((0x22, 1)) + ONE[2:],  # format version 2
        bytes((0x11, 1)) + ONE[2:],  # a single's header on a batch
        *(_corrupt(ONE, offset, "<f", value)
          for offset in range(20, 44, 4)
          for value in (math.nan, math.inf, -math.inf, 1e30, -1e30)),
        _corrupt(ONE, 12, "<d", math.nan),
        _corrupt(ONE, 12, "<d", -1e300),
    ],
)  # fmt: skip
def test_hostile_batches_of_one_are_refused(data: bytes) -> None:
    assert len(data) == len(ONE)
    with pytest.raises(DecodeError) as info:
        decode_movement_batch(data)
    assert info.value.code is ErrorCode.BAD_DATAGRAM
    for odd in (bytearray(data), memoryview(data)):
        with pytest.raises(DecodeError):
            decode_movement_batch(odd)
