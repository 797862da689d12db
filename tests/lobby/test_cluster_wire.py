"""The cluster stream reader's RESP2 codec and connection target (no Redis needed).

The reader and the command link, against a real redis-server, are tested in
``tests/lobby/cluster/test_cluster_wire_redis.py``.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest
import redis.asyncio as aioredis

from lobby.cluster_wire import (
    LeanTarget,
    ReplyBuffer,
    RespError,
    command,
    lean_target,
)

# An XREAD reply of two entries (RESP2), as Redis writes it.
XREAD_REPLY = (
    b"*1\r\n*2\r\n$13\r\nshards:stream\r\n*2\r\n"
    b"*2\r\n$3\r\n1-1\r\n*4\r\n$1\r\nk\r\n$1\r\np\r\n$1\r\nd\r\n$9\r\nall|||\x1f{}\r\n"
    b"*2\r\n$3\r\n1-2\r\n*4\r\n$1\r\nk\r\n$1\r\ne\r\n$1\r\nd\r\n$4\r\nL\x1fp\x1f\r\n"
)
XREAD_VALUE = [
    [
        b"shards:stream",
        [
            [b"1-1", [b"k", b"p", b"d", b"all|||\x1f{}"]],
            [b"1-2", [b"k", b"e", b"d", b"L\x1fp\x1f"]],
        ],
    ]
]


def test_an_xread_reply_parses_to_its_nested_lists() -> None:
    assert ReplyBuffer().feed(XREAD_REPLY) == [XREAD_VALUE]


@pytest.mark.parametrize(
    ("wire", "value"),
    [
        (b"+OK\r\n", "OK"),
        (b":42\r\n", 42),
        (b"$-1\r\n", None),
        (b"*-1\r\n", None),  # a blocking read that timed out
        (b"$0\r\n\r\n", b""),
        (b"$4\r\na\r\nb\r\n", b"a\r\nb"),  # a bulk string holds CRLF: its length decides
        (b"*0\r\n", []),
    ],
)
def test_each_reply_form(wire: bytes, value: Any) -> None:
    assert ReplyBuffer().feed(wire + b"+next\r\n") == [value, "next"]


def test_an_error_reply_is_returned_not_raised() -> None:
    (reply,) = ReplyBuffer().feed(b"-NOAUTH Authentication required.\r\n")
    assert isinstance(reply, RespError) and str(reply) == "NOAUTH Authentication required."


def test_a_reply_cut_anywhere_is_incomplete_until_its_last_byte() -> None:
    for cut in range(len(XREAD_REPLY)):
        received = ReplyBuffer()
        assert received.feed(XREAD_REPLY[:cut]) == []
        assert received.feed(XREAD_REPLY[cut:]) == [XREAD_VALUE]


def test_what_is_not_resp2_is_refused() -> None:
    with pytest.raises(ValueError, match="not a RESP2 reply"):
        ReplyBuffer().feed(b"HTTP/1.1 400\r\n")


def test_a_command_is_an_array_of_bulk_strings() -> None:
    wire = command("XREAD", "BLOCK", b"1000", "STREAMS", "k\u00e9y", "0-0")
    assert ReplyBuffer().feed(wire) == [
        [b"XREAD", b"BLOCK", b"1000", b"STREAMS", "k\u00e9y".encode(), b"0-0"]
    ]


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("redis://127.0.0.1:6390/0", LeanTarget("127.0.0.1", 6390)),
        (
            "redis://reader:s3cret@db.example:7000/5",
            LeanTarget("db.example", 7000, None, 5, "reader", "s3cret"),
        ),
        ("redis://:s3cret@localhost/2", LeanTarget("localhost", 6379, None, 2, None, "s3cret")),
        ("unix:///run/redis.sock?db=3", LeanTarget(path="/run/redis.sock", db=3)),
        ("rediss://db.example:6380/0", None),  # TLS: the redis client reads
    ],
)
async def test_the_lean_target_of_a_url(url: str, target: LeanTarget | None) -> None:
    pool = aioredis.BlockingConnectionPool.from_url(url, decode_responses=True)
    try:
        assert lean_target(pool) == target
    finally:
        await pool.aclose()


# What follows an XREAD reply in the same reads: more replies of each form.
MORE = b"+OK\r\n:7\r\n$-1\r\n*0\r\n-ERR no\r\n*2\r\n*1\r\n$0\r\n\r\n*-1\r\n"


def _fed(pieces: list[bytes]) -> list[Any]:
    received = ReplyBuffer()
    replies: list[Any] = []
    for piece in pieces:
        replies += received.feed(piece)
    return replies


def _as_values(replies: list[Any]) -> list[Any]:
    """RespError instances compare by identity: compare their text instead."""
    return [f"error {r}" if isinstance(r, RespError) else r for r in replies]


def test_replies_cut_at_every_byte_come_out_whole_and_in_order() -> None:
    wire = XREAD_REPLY + MORE + XREAD_REPLY
    whole = _as_values(_fed([wire]))
    assert whole == [XREAD_VALUE, "OK", 7, None, [], "error ERR no", [[b""], None], XREAD_VALUE]
    for cut in range(1, len(wire)):
        assert _as_values(_fed([wire[:cut], wire[cut:]])) == whole, cut
    assert _as_values(_fed([wire[i : i + 1] for i in range(len(wire))])) == whole
    for step in (3, 7, 64):
        assert _as_values(_fed([wire[i : i + step] for i in range(0, len(wire), step)])) == whole


def test_a_big_reply_in_many_pieces_is_read_in_linear_work() -> None:
    """A catch-up XREAD of many entries arriving in many reads: each RESP header is
    looked for (a ``find`` of its CRLF) once, plus once per read for the element a read
    ends in, not once per read for every element before it (which made a 16 MB reply
    block the loop for seconds)."""
    entry = b"*2\r\n$3\r\n1-1\r\n*4\r\n$1\r\nk\r\n$1\r\np\r\n$1\r\nd\r\n$1000\r\n" + b"x" * 1000
    entry += b"\r\n"
    entries = 400
    wire = b"*1\r\n*2\r\n$1\r\ns\r\n*%d\r\n" % entries + entry * entries
    headers = 4 + 8 * entries
    pieces = [wire[i : i + 1024] for i in range(0, len(wire), 1024)]
    finds = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal finds
        if event == "c_call" and getattr(arg, "__name__", "") == "find":
            finds += 1

    sys.setprofile(count)
    try:
        replies = _fed(pieces)
    finally:
        sys.setprofile(None)
    assert len(replies) == 1 and len(replies[0][0][1]) == entries
    assert replies[0][0][1][-1] == [b"1-1", [b"k", b"p", b"d", b"x" * 1000]]
    assert finds <= headers + len(pieces)
