"""Property tests: whatever comes in, only a valid message or a ProtocolError comes out."""

from __future__ import annotations

import json
import struct
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import (
    MESSAGE_TYPES,
    BaseMessage,
    DecodeError,
    MessageType,
    PositionUpdateMessage,
    ProtocolError,
    deserialize,
    serialize,
    serialize_bytes,
)
from protocol import movement as mv
from tests.protocol.test_messages import SAMPLES

__all__: list[str] = []

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SAMPLE_LIST = [SAMPLES[t] for t in MessageType]
SAMPLE_DICTS = [json.loads(serialize(m)) for m in SAMPLE_LIST]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**60, max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from([t.value for t in MessageType])
    | st.sampled_from(["1.0", "1.9", "2.0", "0.1", "x.y", ""])
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)


def _assert_valid(msg: object) -> None:
    assert isinstance(msg, BaseMessage)
    cls = MESSAGE_TYPES[msg.type]
    assert type(msg) is cls
    # re-validates from scratch, and round-trips through the codec
    assert cls.model_validate(msg.model_dump()) == msg
    assert deserialize(serialize_bytes(msg)) == msg


def _feed(data: Any) -> None:
    try:
        msg = deserialize(data)
    except ProtocolError:
        return
    _assert_valid(msg)


@FUZZ
@given(st.binary(max_size=400))
def test_arbitrary_bytes(data: bytes) -> None:
    _feed(data)


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_text(data: str) -> None:
    _feed(data)


@FUZZ
@given(json_values)
def test_arbitrary_json_values(value: Any) -> None:
    _feed(json.dumps(value))  # NaN and Infinity appear as JSON literals too


@FUZZ
@given(
    st.sampled_from(range(len(SAMPLE_DICTS))),
    st.lists(
        st.tuples(
            st.sampled_from(["set", "delete", "add", "type", "version"]),
            st.integers(0, 50),
            json_values,
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_valid_messages(index: int, edits: list[tuple[str, int, Any]]) -> None:
    obj = json.loads(json.dumps(SAMPLE_DICTS[index]))
    for op, pick, value in edits:
        keys = list(obj)
        key = keys[pick % len(keys)] if keys else "type"
        if op == "set":
            obj[key] = value
        elif op == "delete":
            obj.pop(key, None)
        elif op == "add":
            obj[f"new_{pick}"] = value
        elif op == "type":
            obj["type"] = list(MessageType)[pick % len(MessageType)].value
        else:
            obj["version"] = f"1.{pick}" if pick % 3 else "2.0"
    _feed(json.dumps(obj))
    _feed(json.dumps(obj).encode())


@FUZZ
@given(
    st.sampled_from(range(len(SAMPLE_LIST))),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(0, 10_000),
)
def test_byte_mutations_of_valid_messages(
    index: int, flips: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(serialize_bytes(SAMPLE_LIST[index]))
    for pos, byte in flips:
        data[pos % len(data)] = byte
    _feed(bytes(data))
    _feed(bytes(data[: cut % (len(data) + 1)]))


def test_every_sample_is_valid() -> None:
    for msg in SAMPLE_LIST:
        _assert_valid(msg)


# Binary movement ---------------------------------------------------------------


def _feed_binary(data: bytes) -> None:
    for decoder in (mv.decode_movement, mv.decode_movement_batch, mv.decode_movement_any):
        try:
            out = decoder(data)
        except DecodeError:
            continue
        updates = out if isinstance(out, list) else [out]
        assert updates
        for update in updates:
            assert isinstance(update, PositionUpdateMessage)
            _assert_valid(update)
    for unpack in (mv.unpack_movement, mv.unpack_movement_batch):
        try:
            unpack(data)
        except DecodeError:
            continue


@FUZZ
@given(st.binary(max_size=200))
def test_binary_arbitrary_bytes(data: bytes) -> None:
    _feed_binary(data)


@FUZZ
@given(
    st.sampled_from([0x11, 0x12]),
    st.integers(0, 4),
    st.binary(min_size=mv.RECORD_SIZE * 4, max_size=mv.RECORD_SIZE * 4),
)
def test_binary_well_framed_random_records(header: int, count: int, body: bytes) -> None:
    if header == 0x11:
        _feed_binary(bytes((header,)) + body[: mv.RECORD_SIZE])
    else:
        _feed_binary(bytes((header, count)) + body[: mv.RECORD_SIZE * count])


GOOD_SINGLE = mv.encode_movement(SAMPLES[MessageType.POSITION_UPDATE])  # type: ignore[arg-type]
GOOD_BATCH = mv.encode_movement_batch([SAMPLES[MessageType.POSITION_UPDATE]] * 3)  # type: ignore[list-item]


@FUZZ
@given(
    st.booleans(),
    st.lists(st.tuples(st.integers(0, 500), st.integers(0, 7)), min_size=1, max_size=6),
    st.sampled_from([float("nan"), float("inf"), 1e30, -0.0]),
    st.integers(0, 6),
)
def test_binary_mutations_of_valid_datagrams(
    batch: bool, flips: list[tuple[int, int]], special: float, slot: int
) -> None:
    data = bytearray(GOOD_BATCH if batch else GOOD_SINGLE)
    for pos, bit in flips:
        data[pos % len(data)] ^= 1 << bit
    _feed_binary(bytes(data))
    # a special float planted in one of the float fields of the first record
    base = bytearray(GOOD_BATCH if batch else GOOD_SINGLE)
    start = 2 if batch else 1
    if slot == 0:
        struct.pack_into("<d", base, start + 10, special)
    else:
        struct.pack_into("<f", base, start + 18 + 4 * (slot - 1), special)
    _feed_binary(bytes(base))


def _outcome(data: str) -> tuple[str, dict[str, Any] | None]:
    try:
        msg = deserialize(data)
    except ProtocolError as exc:
        return type(exc).__name__, None
    return "ok", msg.model_dump(mode="json", exclude={"version", "message_id"})


@FUZZ
@given(
    st.sampled_from(range(len(SAMPLE_DICTS))),
    st.lists(st.tuples(st.integers(0, 50), json_values), max_size=3),
)
def test_newer_minor_path_validates_like_the_fast_path(
    index: int, edits: list[tuple[int, Any]]
) -> None:
    # A newer-minor message with an unknown field goes through the second (Python-mode)
    # validation; it must accept and refuse exactly what the one-pass JSON path does.
    obj = json.loads(json.dumps(SAMPLE_DICTS[index]))
    for pick, value in edits:
        keys = [k for k in obj if k not in ("version", "type")]
        if keys:
            obj[keys[pick % len(keys)]] = value
    same = _outcome(json.dumps({**obj, "version": "1.0"}))
    newer = _outcome(json.dumps({**obj, "version": "1.9", "zz_future_field": [1, {"a": 2}]}))
    assert same == newer


any_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=80)
python_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | any_text
    | st.binary(max_size=20)
    | st.complex_numbers(),
    lambda children: (
        st.lists(children, max_size=40)
        | st.tuples(children, children)
        | st.dictionaries(any_text | st.integers(), children, max_size=40)
    ),
    max_leaves=40,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_text, st.dictionaries(any_text, python_values, max_size=5), any_text)
def test_error_message_from_any_exception_content(
    text: str, details: dict[str, Any], ref_id: str
) -> None:
    from protocol import ShardsError, error_message_from

    err = error_message_from(ShardsError(text, details=details), ref_id=ref_id)
    assert deserialize(serialize_bytes(err)) == err
