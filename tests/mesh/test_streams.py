"""Framing and the reliable-delivery state machines (pure, no sockets)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.streams import (
    KIND_CONTROL,
    KIND_DATA,
    MAX_FRAME_SIZE,
    FrameDecoder,
    InboundChannel,
    OutboundChannel,
    decode_data,
    encode_data,
    encode_frame,
)
from protocol.errors import DecodeError, MessageTooLargeError


@given(st.lists(st.binary(max_size=300), max_size=20), st.integers(1, 50))
def test_frames_survive_any_split(bodies: list[bytes], piece: int) -> None:
    stream = b"".join(
        encode_frame(KIND_DATA if i % 2 else KIND_CONTROL, b) for i, b in enumerate(bodies)
    )
    decoder = FrameDecoder()
    out = []
    for i in range(0, len(stream), piece):
        out.extend(decoder.feed(stream[i : i + piece]))
    assert [body for _kind, body in out] == bodies
    assert decoder.buffered == 0


def test_bad_frames_raise() -> None:
    with pytest.raises(MessageTooLargeError):
        FrameDecoder().feed((MAX_FRAME_SIZE + 1).to_bytes(4, "big"))
    with pytest.raises(MessageTooLargeError):
        FrameDecoder().feed(b"\x00\x00\x00\x00")
    with pytest.raises(DecodeError):
        FrameDecoder().feed(encode_frame(9, b"x"))
    with pytest.raises(DecodeError):
        decode_data(b"short")
    with pytest.raises(DecodeError):
        decode_data(encode_data(b"E" * 8, 5, 4, b"{}"))  # base beyond seq
    assert decode_data(encode_data(b"E" * 8, 1, 3, b"{}")) == (b"E" * 8, 1, 3, b"{}")


def test_outbound_cumulative_ack_and_expiry() -> None:
    ch = OutboundChannel(b"E" * 8, max_pending=3)
    outs = [ch.push(i, f"m{i}", b"p", deadline=10.0 + i) for i in range(3)]
    with pytest.raises(OverflowError):
        ch.push(9, "m9", b"p", deadline=1.0)
    assert ch.base == 1
    assert [o.seq for o in ch.ack("m1")] == [1, 2]
    assert ch.ack("m1") == [] and ch.ack("unknown") == []
    assert ch.base == 3
    assert ch.expire(11.0) == [] and ch.expire(12.0) == [outs[2]]
    assert ch.base == ch.next_seq == 4


@pytest.mark.parametrize("seed", range(50))
def test_inbound_exactly_once_in_order_under_chaos(seed: int) -> None:
    rng = random.Random(seed)
    n = 40
    arrivals = [s for s in range(1, n + 1) for _ in range(rng.randint(1, 3))]
    rng.shuffle(arrivals)
    ch: InboundChannel[int] = InboundChannel()
    delivered: list[int] = []
    for seq in arrivals:
        got, ack = ch.accept(1, seq, f"m{seq}", seq)
        delivered.extend(item for _mid, item in got)
        if got:
            assert ack == f"m{delivered[-1]}"
    assert delivered == list(range(1, n + 1))


def test_inbound_skips_what_the_sender_gave_up() -> None:
    ch: InboundChannel[str] = InboundChannel()
    assert ch.accept(1, 2, "b", "b") == ([], None)  # waits for 1
    got, ack = ch.accept(3, 3, "c", "c")  # sender gave 1 and 2 up... 2 is held, 1 skipped
    assert [m for _i, m in got] == ["c"] and ack == "c"
    got, ack = ch.accept(1, 1, "a", "a")  # a late copy of an abandoned message
    assert got == [] and ack == "a"
