"""WebSocket framing of the lobby: one text frame holds one message or a batch of them.

The lobby writes what it queued for a client in as few frames as it can: one
queued message goes out as its JSON object; two or more go out as ONE text
frame holding a JSON array of the message objects, in order. Clients must
accept both forms. :func:`encode_batch` is the lobby's half, :func:`decode_batch`
the client's; both work on already-serialized message texts, so the codec
(:mod:`protocol.codec`) validates every item on its own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from protocol.errors import DecodeError

__all__ = ["decode_batch", "encode_batch"]


def encode_batch(messages: Sequence[str]) -> str:
    """One frame for ``messages`` (serialized JSON objects, at least one), in order.

    A single message is sent as itself; several as a JSON array of them.
    """
    if not messages:
        raise ValueError("a frame holds at least one message")
    if len(messages) == 1:
        return messages[0]
    return "[" + ",".join(messages) + "]"


def decode_batch(frame: str) -> list[str]:
    """The message texts of one frame, in order (the inverse of :func:`encode_batch`).

    A frame that is not an array is returned as the one message it is (the
    codec judges it). Raises :class:`DecodeError` for an array that is not JSON
    or nests too deeply.
    """
    stripped = frame.lstrip()
    if not stripped.startswith("["):
        return [frame]
    try:
        items = json.loads(stripped)
    except RecursionError:
        raise DecodeError("batched frame is nested too deeply") from None
    except ValueError as exc:
        raise DecodeError(f"batched frame is not JSON: {exc}") from exc
    if not isinstance(items, list):  # pragma: no cover - it starts with "["
        raise DecodeError("batched frame is not a JSON array")
    try:
        return [json.dumps(item, separators=(",", ":")) for item in items]
    except RecursionError:
        raise DecodeError("batched frame is nested too deeply") from None
