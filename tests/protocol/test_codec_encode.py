"""The encoder's orjson fast path writes exactly what pydantic's serializer writes."""

from __future__ import annotations

import datetime
import enum
import warnings
from collections import OrderedDict

import pytest
from pydantic import field_serializer

from protocol import codec, create_chat_message
from protocol.messages import ChatMessage, MessageType
from tests.protocol.test_messages import SAMPLES

__all__: list[str] = []


@pytest.mark.parametrize("message_type", list(MessageType))
def test_fast_encoding_is_byte_identical(message_type: MessageType) -> None:
    msg = SAMPLES[message_type]
    assert codec.serialize_bytes(msg) == msg.__pydantic_serializer__.to_json(msg)
    assert codec.serialize(msg) == msg.__pydantic_serializer__.to_json(msg).decode()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sender_id", 2**70),  # past 64 bits
        ("timestamp", datetime.datetime(2020, 1, 2, tzinfo=datetime.UTC)),
        ("sender_name", type("Sub", (str,), {})("sub")),
        ("content", ("a", "b")),
        ("content", type("Loud", (str,), {"__str__": lambda self: "LOUD"})("quiet")),
        ("sender_id", enum.IntEnum("Ids", {"ONE": 1}).ONE),
        ("sender_id", 1.5),
        ("sender_id", type("F", (float,), {})(2.5)),
        ("channel", OrderedDict(a=[1, 2.5, None, True])),
    ],
)
def test_values_assigned_after_validation_render_as_pydantic_does(
    field: str, value: object
) -> None:
    msg = create_chat_message(1, "Aria", "hi")
    setattr(msg, field, value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydantic warns about the unexpected type
        expected = msg.__pydantic_serializer__.to_json(msg)
        assert codec.serialize_bytes(msg) == expected


def test_unencodable_text_still_raises_like_pydantic() -> None:
    msg = create_chat_message(1, "Aria", "hi")
    msg.content = "lone \ud800"
    with pytest.raises(Exception) as ours:
        codec.serialize_bytes(msg)
    with pytest.raises(Exception) as theirs:
        msg.__pydantic_serializer__.to_json(msg)
    assert type(ours.value) is type(theirs.value)


def test_a_model_with_its_own_serializer_is_left_to_pydantic() -> None:
    class Shouting(ChatMessage):
        @field_serializer("content")
        def _loud(self, value: str) -> str:
            return value.upper()

    msg = Shouting(content="hi")
    assert codec.serialize_bytes(msg) == msg.__pydantic_serializer__.to_json(msg)
    assert b'"HI"' in codec.serialize_bytes(msg)
