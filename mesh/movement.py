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
``seq`` is accepted again (the sender may have restarted its counter). The
inbox also keeps each sender's newest position, for the interest policy.

Interest (:func:`tick_divisors`, docs/architecture.md "QUIC facts": rates follow
interest): every peer in our location gets our movement every ``d``-th tick,
where

* ``d = 1`` for the ``full_rate_peers`` nearest peers (ranked by distance
  rounded down to a quarter of ``rate_band``, ties broken by
  :func:`pair_salt`, so the choice is deterministic and stable while peers
  jitter);
* otherwise ``d = 2 + int(distance // rate_band)``, at most
  ``max_tick_divisor`` (2 within one band, then 3, then 4);
* a peer whose position we do not know yet counts as at distance 0;
* peers known to be in another location get ``far_tick_divisor`` (the caller's).

Which ticks a peer with ``d > 1`` gets is spread by :func:`pair_salt` too, so a
node sends about the same number of datagrams every tick. A peer skipped on the
tick of our newest update is owed it: when nothing newer is queued within two
ticks, a catch-up tick sends it to every peer still owed, so every view
converges on our last position when we stop.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from protocol.messages.location import PositionUpdateMessage
from protocol.movement import MAX_BATCH, RECORD_SIZE, encode_movement_batch, seq_newer

__all__ = [
    "SAFE_DATAGRAM_PAYLOAD",
    "MovementInbox",
    "MovementOutbox",
    "Point",
    "pair_salt",
    "split_batches",
    "tick_divisors",
]

Point = tuple[float, float, float]
"""A position as ``(x, y, z)``."""

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


def pair_salt(a: int, b: int) -> int:
    """A deterministic 32-bit number of the unordered pair of character ids ``a``, ``b``.

    Symmetric (both ends compute the same), and spread so that ties and tick
    phases do not all fall on the same peers.
    """
    lo, hi = (a, b) if a <= b else (b, a)
    x = (lo * 0x9E3779B1 + hi * 0x85EBCA77 + 0x27D4EB2F) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x2C1B3C6D) & 0xFFFFFFFF
    x ^= x >> 12
    return x


def tick_divisors(
    own: Point | None,
    peers: Mapping[str, tuple[Point | None, int]],
    *,
    full_rate_peers: int,
    rate_band: float,
    max_tick_divisor: int,
) -> dict[str, int]:
    """Every ``d``-th tick for each peer in our location (see the module docstring).

    ``own``: our position (None: unknown, every peer gets the full rate);
    ``peers``: peer id -> (its newest known position or None, :func:`pair_salt`).
    """
    if own is None or len(peers) <= full_rate_peers:
        return dict.fromkeys(peers, 1)
    quantum = rate_band / 4 if rate_band > 0 else 1.0
    ranked: list[tuple[float, int, str, float]] = []
    for pid, (pos, salt) in peers.items():
        dist = 0.0 if pos is None else math.dist(own, pos)
        if not math.isfinite(dist):
            dist = math.inf
        ranked.append((dist // quantum if dist != math.inf else math.inf, salt, pid, dist))
    ranked.sort()
    out: dict[str, int] = {}
    top = max(max_tick_divisor, 1)
    for i, (_, _, pid, dist) in enumerate(ranked):
        if i < full_rate_peers:
            out[pid] = 1
        elif rate_band <= 0 or not math.isfinite(dist):
            out[pid] = top
        else:
            out[pid] = min(2 + int(dist // rate_band), top)
    return out


class MovementOutbox:
    """Position updates waiting for the next tick: newest per character, bounded."""

    def __init__(self, max_pending: int = 64) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self._max = max_pending
        self._pending: OrderedDict[int, PositionUpdateMessage] = OrderedDict()
        self.dropped = 0
        self.latest: list[PositionUpdateMessage] = []
        """The updates of the newest tick that had any (what owed peers get)."""
        self.owed: set[str] = set()
        """Peers skipped on the newest updates' ticks, by peer id (interest)."""

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
        if updates:
            self.latest = updates
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
        self.positions: dict[str, Point] = {}
        """Newest accepted position of each sender."""

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
        p = update.position
        self.positions[sender] = (p.x, p.y, p.z)
        return True

    def forget(self, sender: str) -> None:
        """Drop what is known of ``sender`` (it disconnected)."""
        for key in [k for k in self._last if k[0] == sender]:
            del self._last[key]
        self.positions.pop(sender, None)
