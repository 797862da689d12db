"""protocol.framing: the lobby's WebSocket batches, encoded and decoded by one pair."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.codec import deserialize, serialize
from protocol.errors import DecodeError
from protocol.framing import decode_batch, encode_batch
from protocol.messages.chat import ChatMessage

__all__: list[str] = []


def test_one_message_is_its_own_frame() -> None:
    text = serialize(ChatMessage(content="hi"))
    assert encode_batch([text]) == text
    assert decode_batch(text) == [text]


def test_a_batch_is_one_json_array_in_order() -> None:
    messages = [ChatMessage(content=f"m{i}") for i in range(3)]
    frame = encode_batch([serialize(m) for m in messages])
    assert isinstance(json.loads(frame), list)
    decoded = [deserialize(text) for text in decode_batch(frame)]
    assert decoded == messages


@given(
    st.lists(
        st.text(
            st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1, max_size=40
        ),
        min_size=1,
        max_size=8,
    )
)
def test_round_trip_keeps_every_message(contents: list[str]) -> None:
    texts = [serialize(ChatMessage(content=c)) for c in contents]
    back = decode_batch(encode_batch(texts))
    assert [json.loads(t) for t in back] == [json.loads(t) for t in texts]


def test_empty_batches_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        encode_batch([])


@pytest.mark.parametrize("frame", ["[not json", "[" * 100_000 + "]" * 100_000, "[1,"])
def test_bad_arrays_are_decode_errors(frame: str) -> None:
    with pytest.raises(DecodeError):
        decode_batch(frame)


def test_a_non_array_frame_is_left_to_the_codec() -> None:
    assert decode_batch("  {oops") == ["  {oops"]
    with pytest.raises(DecodeError):
        deserialize(decode_batch("  {oops")[0])
