"""Hypothesis: the STUN/TURN decoders raise only StunError, and encoding round-trips."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.errors import StunError
from protocol.stun import (
    HEADER_SIZE,
    StunClass,
    StunMessage,
    encode_message,
    parse_message,
    xor_address_value,
)
from protocol.turn import encode_channel_data, parse_channel_data, read_channel_data

__all__: list[str] = []

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_COOKIE = bytes.fromhex("2112a442")

txids = st.binary(min_size=12, max_size=12)
attr_types = st.sampled_from(
    [0x0001, 0x0006, 0x0009, 0x000A, 0x000C, 0x000D, 0x0012, 0x0013, 0x0014, 0x0015, 0x0016]
    + [0x0019, 0x0020, 0x8022, 0x7777, 0xC0DE]
)
attributes = st.lists(st.tuples(attr_types, st.binary(max_size=40)), max_size=6)


def _touch_everything(message: StunMessage) -> None:
    """Call every accessor: each returns or raises StunError, nothing else."""
    for accessor in (
        message.xor_mapped_address,
        message.xor_relayed_address,
        message.xor_peer_address,
        message.mapped_address,
        message.error_code,
        message.unknown_attributes,
        message.username,
        message.realm,
        message.nonce,
        message.software,
        message.lifetime,
        message.channel_number,
        message.requested_transport,
        message.data,
        message.unknown_comprehension_required,
    ):
        try:
            accessor()
        except StunError:
            pass
    try:
        message.check_integrity(b"key")
    except StunError:
        pass


def _parse_and_touch(data: bytes) -> None:
    try:
        message = parse_message(data)
    except StunError:
        return
    _touch_everything(message)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    _parse_and_touch(data)


@FUZZ
@given(st.binary(max_size=120), st.integers(0, 0x3FFF), txids)
def test_random_attribute_area_with_a_valid_header(body: bytes, msg_type: int, txid: bytes) -> None:
    header = msg_type.to_bytes(2, "big") + len(body).to_bytes(2, "big") + _COOKIE + txid
    _parse_and_touch(header + body)


@FUZZ
@given(
    st.integers(0, 0xFFF),
    st.sampled_from(list(StunClass)),
    txids,
    attributes,
    st.booleans(),
    st.booleans(),
    st.data(),
)
def test_encode_round_trips_and_mutations_fail_cleanly(
    method: int,
    cls: StunClass,
    txid: bytes,
    attrs: list[tuple[int, bytes]],
    integrity: bool,
    fingerprint: bool,
    data: st.DataObject,
) -> None:
    raw = encode_message(
        method,
        cls,
        txid,
        attrs,
        integrity_key=b"k" if integrity else None,
        fingerprint=fingerprint,
    )
    message = parse_message(raw)
    assert (message.method, message.cls, message.transaction_id) == (method, cls, txid)
    assert list(message.attributes[: len(attrs)]) == attrs
    if integrity:
        message.check_integrity(b"k")
    _touch_everything(message)
    # flip one byte, or cut the message: parse and accessors still only raise StunError
    position = data.draw(st.integers(0, len(raw) - 1))
    flipped = raw[:position] + bytes([raw[position] ^ data.draw(st.integers(1, 255))])
    _parse_and_touch(flipped + raw[position + 1 :])
    _parse_and_touch(raw[: data.draw(st.integers(0, len(raw)))])
    _parse_and_touch(raw[:HEADER_SIZE] + raw[HEADER_SIZE:][::-1])


@FUZZ
@given(
    st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str)),
    st.integers(0, 0xFFFF),
    txids,
)
def test_xor_address_round_trip(host: str, port: int, txid: bytes) -> None:
    raw = encode_message(
        1, StunClass.SUCCESS, txid, [(0x0020, xor_address_value((host, port), txid))]
    )
    assert parse_message(raw).xor_mapped_address() == (host, port)


@FUZZ
@given(st.binary(max_size=80))
def test_channel_data_random_bytes(data: bytes) -> None:
    try:
        parsed = parse_channel_data(data)
    except StunError as exc:
        with pytest.raises(StunError, match=re.escape(str(exc))):
            read_channel_data(data)
    else:
        assert read_channel_data(data) == (parsed.channel, parsed.data)


@FUZZ
@given(st.integers(0x4000, 0x4FFF), st.binary(max_size=100), st.booleans())
def test_channel_data_round_trip(channel: int, payload: bytes, pad: bool) -> None:
    frame = encode_channel_data(channel, payload, pad=pad)
    assert len(frame) == 4 + len(payload) + (-len(payload) % 4 if pad else 0)
    decoded = parse_channel_data(frame)
    assert (decoded.channel, decoded.data) == (channel, payload)
    assert read_channel_data(frame) == (channel, payload)
