"""Reliable peer messages: stream framing, per-sender ordering, acks and dedupe (sans-I/O).

Wire format on a connection's control stream (client-initiated bidirectional
stream 0, both directions), and inside sealed relay envelopes::

    frame   = length:u32 (of kind+body) | kind:u8 | body
    CONTROL = kind 0x00, body = protocol JSON (PEER_HELLO, PEER_PROOF, PEER_WELCOME, PEER_ACK)
    DATA    = kind 0x01, body = epoch:8 | base:u64 | seq:u64 | protocol JSON

* ``epoch``: 8 random bytes per sending node instance; ``seq`` counts from 1 per
  (sender epoch, receiver). A receiver delivers each epoch's messages once, in
  ``seq`` order, whatever path (stream, relay, a later connection) they took.
* ``base``: the sender's lowest still-unacknowledged ``seq``; everything below
  it was delivered or given up, so a receiver that lost its state (or missed a
  message the sender abandoned) skips ahead instead of waiting forever.
* An ack is a PEER_ACK whose ``ref_id`` is the ``message_id`` of a delivered
  DATA message; since delivery is in order, it acknowledges every earlier
  ``seq`` of that epoch as well (cumulative).

Frames over :data:`MAX_FRAME_SIZE` and malformed headers raise
:class:`~protocol.errors.MessageTooLargeError` / :class:`~protocol.errors.DecodeError`:
the connection that sent them is closed.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from protocol.errors import DecodeError, MessageTooLargeError

__all__ = [
    "DATA_HEADER",
    "EPOCH_SIZE",
    "KIND_CONTROL",
    "KIND_DATA",
    "MAX_FRAME_SIZE",
    "MAX_PAYLOAD_SIZE",
    "FrameDecoder",
    "InboundChannel",
    "OutboundChannel",
    "Outgoing",
    "decode_data",
    "encode_data",
    "encode_frame",
    "split_frame",
]

KIND_CONTROL = 0x00
KIND_DATA = 0x01
EPOCH_SIZE = 8
DATA_HEADER = struct.Struct("!8sQQ")
MAX_PAYLOAD_SIZE = 16 * 1024
"""Largest protocol JSON a peer frame carries (chat is at most 2,000 characters)."""
MAX_FRAME_SIZE = MAX_PAYLOAD_SIZE + 1 + DATA_HEADER.size
_LEN = struct.Struct("!I")
T = TypeVar("T")


def encode_frame(kind: int, body: bytes) -> bytes:
    """One length-prefixed frame."""
    return _LEN.pack(len(body) + 1) + bytes((kind,)) + body


def split_frame(frame_payload: bytes) -> tuple[int, bytes]:
    """``(kind, body)`` of a frame payload (the bytes after the length)."""
    if not frame_payload:
        raise DecodeError("empty frame")
    kind = frame_payload[0]
    if kind not in (KIND_CONTROL, KIND_DATA):
        raise DecodeError(f"unknown frame kind {kind}")
    return kind, frame_payload[1:]


def encode_data(epoch: bytes, base: int, seq: int, payload: bytes) -> bytes:
    """The body of a DATA frame."""
    return DATA_HEADER.pack(epoch, base, seq) + payload


def decode_data(body: bytes) -> tuple[bytes, int, int, bytes]:
    """``(epoch, base, seq, payload)`` of a DATA body; raises :class:`DecodeError`."""
    if len(body) < DATA_HEADER.size:
        raise DecodeError("DATA frame shorter than its header")
    epoch, base, seq = DATA_HEADER.unpack_from(body)
    if seq == 0 or base == 0 or base > seq:
        raise DecodeError("DATA frame with an impossible seq/base")
    return epoch, base, seq, body[DATA_HEADER.size :]


class FrameDecoder:
    """Reassembles frames from stream data that arrives in arbitrary pieces."""

    def __init__(self, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        self._buffer = bytearray()
        self._max = max_frame_size

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Add stream bytes; return every complete ``(kind, body)``.

        Raises :class:`MessageTooLargeError` when a frame announces more than the
        limit (before buffering it) and :class:`DecodeError` for a bad frame.
        """
        self._buffer += data
        frames: list[tuple[int, bytes]] = []
        while len(self._buffer) >= _LEN.size:
            (length,) = _LEN.unpack_from(self._buffer)
            if length == 0 or length > self._max:
                raise MessageTooLargeError(f"frame of {length} bytes (limit {self._max})")
            if len(self._buffer) < _LEN.size + length:
                break
            payload = bytes(self._buffer[_LEN.size : _LEN.size + length])
            del self._buffer[: _LEN.size + length]
            frames.append(split_frame(payload))
        return frames

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held."""
        return len(self._buffer)


@dataclass(slots=True)
class Outgoing:
    """One reliable message waiting for its ack."""

    handle: int
    seq: int
    message_id: str
    payload: bytes
    deadline: float
    relay_resend_at: float | None = None
    sent_direct_at: float | None = None


@dataclass(slots=True)
class OutboundChannel:
    """Our reliable messages to one peer: sequence numbers and the unacked queue."""

    epoch: bytes
    max_pending: int = 1024
    next_seq: int = 1
    pending: OrderedDict[int, Outgoing] = field(default_factory=OrderedDict)
    _by_id: dict[str, int] = field(default_factory=dict)

    def push(self, handle: int, message_id: str, payload: bytes, deadline: float) -> Outgoing:
        """Queue a message; raises :class:`OverflowError` when ``max_pending`` are unacked."""
        if len(self.pending) >= self.max_pending:
            raise OverflowError("too many unacknowledged messages to this peer")
        out = Outgoing(handle, self.next_seq, message_id, payload, deadline)
        self.pending[out.seq] = out
        self._by_id[message_id] = out.seq
        self.next_seq += 1
        return out

    @property
    def base(self) -> int:
        """The lowest unacked seq (``next_seq`` when nothing is pending)."""
        return next(iter(self.pending), self.next_seq)

    def data_body(self, out: Outgoing) -> bytes:
        """The DATA frame body of ``out`` with the current ``base``."""
        return encode_data(self.epoch, min(self.base, out.seq), out.seq, out.payload)

    def ack(self, message_id: str) -> list[Outgoing]:
        """Settle ``message_id`` and everything before it; returns what was settled."""
        seq = self._by_id.get(message_id)
        if seq is None:
            return []
        settled: list[Outgoing] = []
        while self.pending:
            first = next(iter(self.pending))
            if first > seq:
                break
            out = self.pending.pop(first)
            self._by_id.pop(out.message_id, None)
            settled.append(out)
        return settled

    def drop_all(self) -> list[Outgoing]:
        """Remove and return every pending message (they failed)."""
        gone = list(self.pending.values())
        self.pending.clear()
        self._by_id.clear()
        return gone

    def expire(self, now: float) -> list[Outgoing]:
        """Remove and return messages whose deadline passed."""
        gone = [out for out in self.pending.values() if out.deadline <= now]
        for out in gone:
            del self.pending[out.seq]
            self._by_id.pop(out.message_id, None)
        return gone


@dataclass(slots=True)
class InboundChannel(Generic[T]):
    """One sender epoch's messages to us: in-order, exactly-once delivery."""

    max_buffered: int = 64
    delivered: int = 0
    last_id: str | None = None
    buffered: dict[int, tuple[str, T]] = field(default_factory=dict)

    def accept(
        self, base: int, seq: int, message_id: str, payload: T
    ) -> tuple[list[tuple[str, T]], str | None]:
        """Take one DATA message; return ``(deliverable in order, message id to ack)``.

        A duplicate is re-acknowledged (its own id: it was delivered) and not
        delivered again; a message beyond a gap is held (bounded) until the gap
        fills or ``base`` shows the sender gave the missing ones up.
        """
        if base - 1 > self.delivered:
            self.delivered = base - 1
            for old in [s for s in self.buffered if s <= self.delivered]:
                del self.buffered[old]
        if seq <= self.delivered:
            return [], message_id
        if seq - self.delivered <= self.max_buffered:
            self.buffered.setdefault(seq, (message_id, payload))
        out: list[tuple[str, T]] = []
        while self.delivered + 1 in self.buffered:
            self.delivered += 1
            item = self.buffered.pop(self.delivered)
            self.last_id = item[0]
            out.append(item)
        return out, (self.last_id if out else None)
