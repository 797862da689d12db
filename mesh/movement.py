"""Movement over DATAGRAM frames: batching, bounded queues, newest-wins (sans-I/O).

Sender side (:class:`MovementOutbox`): position updates queued during one tick
are coalesced (newest wins per character) and leave together as one binary
batch (:func:`protocol.movement.encode_movement_batch`) per connection, split
only when a batch would exceed the datagram size limit. The outbox is bounded
(drop oldest); what aioquic itself still holds is trimmed by the node through
:mod:`mesh._quicshim`, so a stalled receiver never makes memory grow nor gets
second-old movement later.

Receiver side (:class:`MovementInbox`): per sender and character, only an
update whose 16-bit ``seq`` is newer (:func:`protocol.movement.seq_newer`,
wrap-around aware) than the last accepted one is delivered; stale and
duplicate ones are dropped. After ``reset_after`` seconds of silence any
``seq`` is accepted again (the sender may have restarted its counter).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from protocol.messages.location import PositionUpdateMessage
from protocol.movement import MAX_BATCH, RECORD_SIZE, encode_movement_batch, seq_newer

__all__ = [
    "SAFE_DATAGRAM_PAYLOAD",
    "MovementInbox",
    "MovementOutbox",
    "split_batches",
]

SAFE_DATAGRAM_PAYLOAD = 1100
"""Largest DATAGRAM payload the mesh sends: under the ~1170 bytes past which
aioquic 1.7.2 wedges its datagram queue (aioquic issue #294) at 1200-byte packets."""


def split_batches(updates: Sequence[PositionUpdateMessage], max_payload: int) -> list[bytes]:
    """Encode ``updates`` as few batches as possible, each at most ``max_payload`` bytes."""
    per_batch = min(MAX_BATCH, (max_payload - 2) // RECORD_SIZE)
    if per_batch < 1 or not updates:
        return []
    return [
        encode_movement_batch(updates[i : i + per_batch]) for i in range(0, len(updates), per_batch)
    ]


class MovementOutbox:
    """Position updates waiting for the next tick: newest per character, bounded."""

    def __init__(self, max_pending: int = 64) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self._max = max_pending
        self._pending: OrderedDict[int, PositionUpdateMessage] = OrderedDict()
        self.dropped = 0

    def put(self, update: PositionUpdateMessage) -> None:
        """Queue ``update``; it replaces an older one of the same character."""
        current = self._pending.get(update.character_id)
        if current is not None and not seq_newer(update.seq, current.seq):
            self.dropped += 1
            return
        self._pending.pop(update.character_id, None)
        self._pending[update.character_id] = update
        while len(self._pending) > self._max:
            self._pending.popitem(last=False)
            self.dropped += 1

    def __len__(self) -> int:
        return len(self._pending)

    def take(self) -> list[PositionUpdateMessage]:
        """Everything queued for this tick (the outbox is empty afterwards)."""
        updates = list(self._pending.values())
        self._pending.clear()
        return updates


@dataclass(slots=True)
class _Last:
    seq: int
    at: float


class MovementInbox:
    """Newest-wins filter for received updates, per (sender, character)."""

    def __init__(self, reset_after: float = 10.0, max_tracked: int = 4096) -> None:
        self._reset_after = reset_after
        self._max = max_tracked
        self._last: OrderedDict[tuple[str, int], _Last] = OrderedDict()
        self.stale = 0

    def accept(self, sender: str, update: PositionUpdateMessage, now: float) -> bool:
        """True when ``update`` is newer than the last accepted one of its character."""
        key = (sender, update.character_id)
        last = self._last.get(key)
        if (
            last is not None
            and now - last.at < self._reset_after
            and not seq_newer(update.seq, last.seq)
        ):
            self.stale += 1
            return False
        self._last[key] = _Last(update.seq, now)
        self._last.move_to_end(key)
        while len(self._last) > self._max:
            self._last.popitem(last=False)
        return True

    def forget(self, sender: str) -> None:
        """Drop what is known of ``sender`` (it disconnected)."""
        for key in [k for k in self._last if k[0] == sender]:
            del self._last[key]
