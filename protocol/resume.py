"""Resume cursors: how a client that reconnects gets exactly the lobby pushes it missed.

Every push the lobby sends to a client that asked for cursors carries one, a
monotonic position ``"<major>-<minor>"`` (two decimal integers, compared as a
pair; in a cluster it is the Redis stream entry id of the push). The client
remembers the last cursor it saw and, when it reconnects with the same session,
passes it back as the ``cursor`` query parameter of ``GET /ws``
(:data:`RESUME_CURSOR_PARAM`); the lobby then sends, in order and once, every
push meant for that session after the cursor, before the live ones. An empty
``cursor=`` asks for cursors without resuming anything (the first connection).
A client that sends no ``cursor`` parameter gets the plain messages it always
got: cursors are opt-in, so older clients see no new field.

On the wire the cursor is the first member of the pushed JSON object, before
the message's own fields, and is not a field of any message model: the client
strips it off with :func:`unstamp` before :func:`protocol.codec.deserialize`
(batched frames are split first, :func:`protocol.framing.decode_batch`; the
member survives that). After a resume with a cursor the lobby sends a
``HEARTBEAT`` stamped with ``"replay"``: :data:`REPLAY_COMPLETE` (nothing was
lost), or :data:`REPLAY_GAP` (the cursor was older than what the lobby still
keeps, or what it kept overflowed: some pushes are gone, refetch the state
over REST).

Pure text functions: no I/O, no clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from protocol.errors import ErrorCode, ProtocolError

__all__ = [
    "REPLAY_COMPLETE",
    "REPLAY_GAP",
    "RESUME_CURSOR_PARAM",
    "CursorKey",
    "Replay",
    "Stamped",
    "cursor_key",
    "stamp",
    "unstamp",
]

RESUME_CURSOR_PARAM = "cursor"
"""``GET /ws?cursor=<last cursor seen>`` (empty: cursors wanted, nothing to resume)."""

Replay = Literal["complete", "gap"]
REPLAY_COMPLETE: Replay = "complete"
REPLAY_GAP: Replay = "gap"

CursorKey = tuple[int, int]
"""A cursor as the pair it is compared as."""

_CURSOR = re.compile(r"(\d{1,20})-(\d{1,20})")
_CURSOR_HEAD = '{"cursor":"'
_REPLAY_HEAD = '{"replay":"'


def cursor_key(text: str) -> CursorKey:
    """The pair ``text`` (``"<major>-<minor>"``) stands for; :class:`ProtocolError`
    (``bad_request``) if it is not a cursor."""
    match = _CURSOR.fullmatch(text)
    if match is None:
        raise ProtocolError(
            f"not a resume cursor (expected <integer>-<integer>): {text[:48]!r}",
            code=ErrorCode.BAD_REQUEST,
        )
    return int(match[1]), int(match[2])


def stamp(text: str, cursor: str | None = None, replay: Replay | None = None) -> str:
    """``text`` (one serialized JSON object) with ``cursor`` and ``replay`` as its first
    members. ``cursor`` must be a cursor (the lobby's own, never client text)."""
    head = ""
    if cursor is not None:
        head = f'"cursor":"{cursor}",'
    if replay is not None:
        head += f'"replay":"{replay}",'
    return "{" + head + text[1:] if head else text


@dataclass(frozen=True, slots=True)
class Stamped:
    """A pushed object split by :func:`unstamp`: the message text and what was stamped."""

    text: str
    cursor: str | None = None
    replay: Replay | None = None


def unstamp(text: str) -> Stamped:
    """Split what :func:`stamp` added off ``text`` (text without it is returned as is).

    Only a leading member is taken: inside a JSON string a quote is always escaped,
    so the leading ``{"cursor":"`` cannot come from message content.
    """
    cursor: str | None = None
    replay: Replay | None = None
    if text.startswith(_CURSOR_HEAD):
        end = text.find('",', len(_CURSOR_HEAD))
        value = text[len(_CURSOR_HEAD) : end]
        if end < 0 or _CURSOR.fullmatch(value) is None:
            return Stamped(text)
        cursor = value
        text = "{" + text[end + 2 :]
    if text.startswith(_REPLAY_HEAD):
        end = text.find('",', len(_REPLAY_HEAD))
        value = text[len(_REPLAY_HEAD) : end]
        if end >= 0 and value in (REPLAY_COMPLETE, REPLAY_GAP):
            replay = REPLAY_COMPLETE if value == REPLAY_COMPLETE else REPLAY_GAP
            text = "{" + text[end + 2 :]
    return Stamped(text, cursor, replay)
