"""Resume cursors on the wire: stamped first, split off before the codec, compared as pairs."""

from __future__ import annotations

import json

import pytest

from protocol.codec import deserialize, serialize
from protocol.errors import ProtocolError
from protocol.framing import decode_batch, encode_batch
from protocol.messages import ChatMessage, HeartbeatMessage
from protocol.resume import REPLAY_GAP, cursor_key, stamp, unstamp


def test_a_stamped_push_splits_back_into_the_message_and_its_cursor() -> None:
    text = serialize(ChatMessage(sender_id=1, sender_name="Ann", content="hi", timestamp=1.0))
    stamped = stamp(text, "1733354681000-7")
    assert json.loads(stamped)["cursor"] == "1733354681000-7"
    with pytest.raises(ProtocolError):  # a message model has no such field
        deserialize(stamped)
    split = unstamp(stamped)
    assert (split.text, split.cursor, split.replay) == (text, "1733354681000-7", None)
    assert deserialize(split.text) == deserialize(text)


def test_the_replay_notice_and_a_plain_text_pass_through() -> None:
    text = serialize(HeartbeatMessage(timestamp=2.0))
    notice = unstamp(stamp(text, replay=REPLAY_GAP))
    assert (notice.text, notice.cursor, notice.replay) == (text, None, REPLAY_GAP)
    assert unstamp(text).text == text
    assert stamp(text) == text


def test_content_that_looks_like_a_cursor_is_never_taken_for_one() -> None:
    content = '","cursor":"1-2'
    text = serialize(ChatMessage(sender_id=1, sender_name="Ann", content=content, timestamp=1.0))
    split = unstamp(text)
    assert (split.text, split.cursor) == (text, None)
    assert unstamp(stamp(text, "3-4")).text == text
    # a leading member that is not a well-formed cursor is left for the codec to refuse
    forged = '{"cursor":"x",' + text[1:]
    assert unstamp(forged).cursor is None


def test_cursors_survive_batching() -> None:
    texts = [
        stamp(serialize(ChatMessage(sender_id=1, sender_name="A", content=f"m{n}")), f"5-{n}")
        for n in range(3)
    ]
    items = [unstamp(t) for t in decode_batch(encode_batch(texts))]
    assert [i.cursor for i in items] == ["5-0", "5-1", "5-2"]
    assert [deserialize(i.text).content for i in items] == ["m0", "m1", "m2"]  # type: ignore[union-attr]


def test_cursors_compare_as_pairs_and_anything_else_is_refused() -> None:
    assert cursor_key("10-2") > cursor_key("9-99") > cursor_key("9-3")
    for bad in ("", "12", "1-2-3", "a-1", "-1-2", "1-" + "9" * 21):
        with pytest.raises(ProtocolError):
            cursor_key(bad)
