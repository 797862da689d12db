"""Movement over DATAGRAM frames: the tick schedule, batching, bounded queues, newest-wins
(sans-I/O).

:class:`MovementScheduler` is the part of :class:`mesh.core.MeshCore` that
decides which datagrams leave on each movement tick and to whom, and which
received ones are delivered; the classes and functions below it are its
pure pieces. (The binary record layout is :mod:`protocol.movement`; the
lobby's movement rules are elsewhere.)

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

Ticks (:class:`MovementScheduler`): an update queued when no tick ran yet leaves at
once; after that update ticks keep slots ``tick_interval`` apart, and an update is due
at once from ``TICK_EARLY`` (a quarter) of an interval before its slot on; queued
earlier, it waits until then. A tick that runs early keeps its slot and the next slot is
``1 - TICK_SLACK`` of an interval after it, so over time there are at most
``1 / (1 - TICK_SLACK)`` update ticks per ``tick_interval``; one that runs late (a busy
loop) starts the slots anew from its own time. The quarter interval is for a game that
queues once per frame at the tick rate: its frames, and an event loop's timers (uvloop
rounds them to the millisecond and may run them early), jitter around the slot, and
an update that came a hair early would otherwise wait for the slot, every frame from
then on, since the slots then follow the waiting ticks. The slack is for the same game
after a late tick (a busy moment, the handshakes of a crowd): the late tick moved the
slots later, so each later frame comes early and would wait by as much for the rest of
the game; the slack gives that wait back, a sixteenth of an interval per tick.

Interest (:func:`tick_divisors`; rates follow interest, so a crowded area costs a
node less than one datagram per peer per tick): every peer in our location gets
our movement every ``d``-th tick, where

* ``d = 1`` for the ``full_rate_peers`` nearest peers (ranked by distance
  rounded down to a quarter of ``rate_band``, ties broken by
  :func:`pair_salt`, so the choice is deterministic and stable while peers
  jitter);
* otherwise ``d = 2 + int(distance // rate_band)``, at most
  ``max_tick_divisor`` (by default 3: 2 within one band, 3 beyond);
* a peer whose position we do not know yet counts as at distance 0;
* peers known to be in another location get ``far_tick_divisor`` (the caller's).

Which ticks a peer with ``d > 1`` gets is spread by :func:`pair_salt` too, so a
node sends about the same number of datagrams every tick. The rate is one of time,
not of ticks run: a peer that got nothing for ``d + 1/2`` tick intervals (its turn
fell on a tick a late loop merged into the next one, or the game queues positions
more slowly than ``tick_interval``) gets the next tick, so how old its view of us
gets stays bounded by ``d`` intervals, not by how many ticks the node managed. A
peer skipped on the tick of our newest update is owed it: when nothing newer is
queued within two ticks, a catch-up tick sends it to every peer still owed, so
every view converges on our last position when we stop.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from mesh import _quicshim
from mesh.config import SAFE_DATAGRAM_PAYLOAD
from mesh.context import CoreContext
from mesh.events import PositionReceived
from mesh.link import Link, LinkState
from mesh.router import LinkTable
from protocol.errors import ProtocolError
from protocol.messages.location import PositionUpdateMessage
from protocol.movement import (
    MAX_BATCH,
    RECORD_SIZE,
    decode_movement_batch,
    encode_movement_batch,
    seq_newer,
)

__all__ = [
    "SAFE_DATAGRAM_PAYLOAD",
    "TICK_EARLY",
    "TICK_SLACK",
    "MovementInbox",
    "MovementInfo",
    "MovementOutbox",
    "MovementScheduler",
    "Point",
    "pair_salt",
    "split_batches",
    "tick_divisors",
]

logger = logging.getLogger("mesh.core")

Point = tuple[float, float, float]
"""A position as ``(x, y, z)``."""

_ONE_BATCH_SIZE = 2 + RECORD_SIZE


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
    inf = math.inf
    ranked: list[tuple[float, int, str, float]] = []
    for pid, (pos, salt) in peers.items():
        dist = 0.0 if pos is None else math.dist(own, pos)
        if not dist < inf:  # NaN or infinite (a distance is never negative): ranked last
            dist = inf
        ranked.append((dist // quantum if dist != inf else inf, salt, pid, dist))
    ranked.sort()
    out: dict[str, int] = {}
    top = max(max_tick_divisor, 1)
    for i, (_, _, pid, dist) in enumerate(ranked):
        if i < full_rate_peers:
            out[pid] = 1
        elif rate_band <= 0 or dist == inf:
            out[pid] = top
        else:
            divisor = 2 + int(dist // rate_band)
            out[pid] = divisor if divisor < top else top
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
        pending = self._pending
        cid = update.character_id
        current = pending.get(cid)
        if current is None:
            if len(pending) >= self._max:  # full: the oldest makes room
                pending.popitem(last=False)
                self.dropped += 1
            pending[cid] = update
        elif seq_newer(update.seq, current.seq):
            pending[cid] = update
            pending.move_to_end(cid)
        else:
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
        tracked = self._last
        last = tracked.get(key)
        seq = update.seq
        if last is None:
            tracked[key] = _Last(seq, now)
            while len(tracked) > self._max:
                tracked.popitem(last=False)
        # not seq_newer(seq, last.seq) (protocol.movement, the definition), in line: once
        # per delivered update
        elif now - last.at < self._reset_after and not 0 < ((seq - last.seq) & 0xFFFF) < 0x8000:
            self.stale += 1
            return False
        else:
            last.seq = seq  # updated in place: no allocation per delivered update
            last.at = now
            tracked.move_to_end(key)
        p = update.position
        self.positions[sender] = (p.x, p.y, p.z)
        return True

    def forget(self, sender: str) -> None:
        """Drop what is known of ``sender`` (it disconnected)."""
        for key in [k for k in self._last if k[0] == sender]:
            del self._last[key]
        self.positions.pop(sender, None)


@dataclass(frozen=True, slots=True)
class MovementInfo:
    """A read-only snapshot of the movement part (:meth:`MovementScheduler.info`)."""

    ticks: int
    """Ticks that sent new updates so far."""
    next_tick: float | None
    """When the next tick (or catch-up tick) runs; None: nothing queued or owed."""
    queued: int
    """Updates waiting for the next tick."""
    latest: tuple[PositionUpdateMessage, ...]
    """The updates of the newest tick that had any."""
    owed: frozenset[str]
    """Peers skipped on the newest updates' tick (a catch-up tick is planned)."""
    dropped: int
    """Updates dropped by the outbox (replaced by a newer one, or over its bound)."""
    stale: int
    """Received updates dropped as older than one already delivered."""
    sent: int = 0
    """Update records handed to aioquic so far, one per (update, peer): what interest chose
    to send, before any loss."""


@dataclass(frozen=True, slots=True)
class _Divisors:
    """The interest answer of one tick, reused by the next few (``INTEREST_REUSE_TICKS``)."""

    tick: int
    here: int | None
    changes: int
    """:attr:`~mesh.router.LinkTable.directs_changes` when ranked (same: same peers)."""
    peers: frozenset[str]
    divisors: dict[str, int]


_Turn = tuple[str, Link, int, int, float, int | None]
"""A direct peer's place in the tick schedule: (peer id, link, cycle, phase, patience, limit).

It gets a tick ``n`` when ``cycle`` is 1 or ``(n + phase) % cycle == 0``, or once it waited
``patience`` seconds (``divisor + 1/2`` intervals); ``phase`` is :func:`pair_salt` modulo the
cycle; ``limit``: the largest movement batch it takes (None: it takes no DATAGRAM frames)."""


#: How far before its slot an update tick may run, in tick intervals (see the module
#: docstring): a game queueing once per frame at the tick rate jitters around the slot.
TICK_EARLY = 0.25
#: How much sooner than a full ``tick_interval`` the next slot comes (see the module docstring)
TICK_SLACK = 1 / 16

#: Ticks for which one ranking of the peers by distance is reused (3 ticks at 30 Hz: a
#: runner covers about half a metre, against quarter-band steps of 12.5 m by default).
INTEREST_REUSE_TICKS = 3

PeerMoved = Callable[[str, int, float], None]
"""``(peer id, new location id, now)``: a received update shows a peer in another location."""


class MovementScheduler:
    """Our movement out on ticks, theirs in, newest wins (see the module docstring)."""

    def __init__(
        self,
        ctx: CoreContext,
        table: LinkTable,
        locations: Mapping[str, int],
        on_moved: PeerMoved,
    ) -> None:
        self._ctx = ctx
        self._table = table
        self._locations = locations
        self._on_moved = on_moved
        self._outbox = MovementOutbox(ctx.config.movement_queue)
        self._inbox = MovementInbox()
        self.next_tick: float | None = None
        """When :meth:`tick` must run (None: nothing queued or owed). An attribute, as the
        core reads it on every flush; read only: :meth:`queue` and :meth:`tick` set it."""
        self._slot: float | None = None  # the next update tick's slot (None: none ran yet)
        self._ticks = 0
        self._sent = 0
        self._sent_at: dict[str, float] = {}  # when each peer last got our movement
        self._divisors: _Divisors | None = None
        # the schedule of the current interest answer (rebuilt with it, or when a direct
        # link or our character changes): what each tick would otherwise work out per link
        self._turns: list[_Turn] = []
        self._turns_of: tuple[dict[str, int] | None, int, int] = (None, -1, -1)
        # pair_salt of each direct peer with our character, for (our character, directs_changes)
        self._salts: dict[str, int] = {}
        self._salts_of = (-1, -1)

    def queue(self, update: PositionUpdateMessage, now: float) -> float:
        """Queue our position for the next tick (newest wins); the tick is due at once unless
        that is more than ``TICK_EARLY`` of an interval before its slot (see the module
        docstring), else at that moment. Returns when the next tick runs (:meth:`timer`)."""
        self._outbox.put(update)
        due = now
        slot = self._slot
        if slot is not None:
            earliest = slot - TICK_EARLY * self._ctx.config.tick_interval
            if earliest > now:
                due = earliest
        next_tick = self.next_tick
        if next_tick is None or due < next_tick:  # a later catch-up tick waits
            self.next_tick = next_tick = due
        return next_tick

    def tick(self, now: float, here: int | None) -> None:
        """One movement tick: the newest updates to every peer whose turn it is.

        ``here``: our location. Rates follow interest (:func:`tick_divisors`); a
        peer skipped is owed the newest updates: if nothing newer is queued
        within two ticks, a catch-up tick sends them to every peer still owed.
        """
        outbox = self._outbox
        updates = outbox.take()
        self.next_tick = None
        if not updates:
            # nothing new for two ticks: every peer still owed our newest gets it now;
            # the tick clock is left alone, so this never holds back the next update
            if outbox.owed:
                directs = self._table.directs
                owed_links = [
                    (pid, link, _datagram_limit(link, self._ctx.config.max_datagram_payload))
                    for pid in outbox.owed
                    if (link := directs.get(pid)) and link.state is LinkState.ACTIVE
                ]
                self._send(outbox.latest, owed_links, now)
                outbox.owed = set()
            return
        slot = self._slot  # early (within TICK_EARLY): the slot stays; late: from now on
        base = now if slot is None or now > slot else slot
        self._slot = base + self._ctx.config.tick_interval * (1 - TICK_SLACK)
        self._ticks = ticks = self._ticks + 1
        own = updates[-1]
        divisors = self._interest(own, here).divisors
        changes = self._table.directs_changes
        planned = self._turns_of
        if planned[0] is not divisors or planned[1] != changes or planned[2] != own.character_id:
            self._plan(divisors, own.character_id, changes)
        owed: set[str] = set()
        due: list[tuple[str, Link, int | None]] = []
        sent_at = self._sent_at
        active = LinkState.ACTIVE
        for pid, link, cycle, phase, patience, limit in self._turns:
            if link.state is not active:
                continue
            if (
                cycle > 1
                and (ticks + phase) % cycle
                and now - sent_at.setdefault(pid, now) < patience
            ):
                owed.add(pid)  # not its turn, nor overdue (see the module docstring)
                continue
            due.append((pid, link, limit))
        self._send(updates, due, now)
        outbox.owed = owed
        if owed:  # a catch-up tick, unless a newer update comes first
            self.next_tick = now + 2 * self._ctx.config.tick_interval

    def receive(self, link: Link, data: bytes, now: float) -> None:
        """A DATAGRAM frame on ``link``: deliver the newer updates of the peer's own character."""
        ctx = self._ctx
        identity = link.identity
        if link.state is not LinkState.ACTIVE or identity is None:
            ctx.stats["bad_datagrams"] += 1
            return
        try:
            updates = decode_movement_batch(data)
        except ProtocolError as exc:
            ctx.stats["bad_datagrams"] += 1
            logger.debug("bad datagram from %s dropped: %s", link.describe(), exc)
            return
        link.last_activity = now
        pid = identity.peer_id
        cid = identity.character_id
        accept = self._inbox.accept
        locations = self._locations
        events = ctx.events
        for update in updates:
            if update.character_id != cid:
                ctx.stats["spoofed_updates"] += 1
                continue
            if accept(pid, update, now):
                if locations.get(pid) != update.location_id:
                    self._on_moved(pid, update.location_id, now)
                events.append(PositionReceived(identity, update))

    def forget(self, peer_id: str) -> None:
        """``peer_id`` disconnected: drop what the inbox knows of it."""
        self._inbox.forget(peer_id)
        self._sent_at.pop(peer_id, None)

    def info(self) -> MovementInfo:
        """A snapshot of the schedule and its queues."""
        outbox = self._outbox
        return MovementInfo(
            ticks=self._ticks,
            next_tick=self.next_tick,
            queued=len(outbox),
            latest=tuple(outbox.latest),
            owed=frozenset(outbox.owed),
            dropped=outbox.dropped,
            stale=self._inbox.stale,
            sent=self._sent,
        )

    # internals ----------------------------------------------------------------------

    def _send(
        self,
        updates: list[PositionUpdateMessage],
        peers: list[tuple[str, Link, int | None]],
        now: float,
    ) -> None:
        """``updates`` to each of ``peers`` (peer id, its ``ACTIVE`` link in the table, the
        largest batch it takes: :func:`_datagram_limit`)."""
        config = self._ctx.config
        sent_at = self._sent_at
        cache: dict[int, list[bytes]] = {}
        keep = config.max_pending_datagrams
        # a pending ACK rides along once it is old enough (MeshConfig.ack_piggyback_ticks);
        # ack_piggyback_age's product, in line (once per tick)
        ack_age = config.ack_piggyback_ticks * config.tick_interval if config.ack_tuning else None
        one = len(updates) == 1
        sent = 0
        batches: list[bytes] = []
        batches_limit: int | None = None  # what ``batches`` were split for (nearly all share it)
        for pid, link, limit in peers:
            if limit is None:
                continue
            previous = sent_at.get(pid)
            sent_at[pid] = now
            if limit != batches_limit:
                cached = cache.get(limit)
                if cached is None:
                    if one and limit >= _ONE_BATCH_SIZE:  # the usual tick: split_batches's
                        cached = [encode_movement_batch(updates)]
                    else:
                        cached = split_batches(updates, limit)
                    cache[limit] = cached
                batches, batches_limit = cached, limit
            sent += 1
            # queued, aioquic's queue trimmed to its bound, and the next datagram to this
            # peer, if the game keeps its pace: an ACK whose delay runs out before then
            # rides now rather than alone in a packet (_quicshim.piggyback_ack), in one call
            link.quic.send_movement(
                batches, keep, now, ack_age, None if previous is None else now + (now - previous)
            )
        self._sent += sent * len(updates)

    def _plan(self, divisors: dict[str, int], own: int, changes: int) -> None:
        """The schedule of each direct link for ``divisors`` (:data:`_Turn`), with each
        ``ACTIVE`` link's ACK delay tuned to its divisor.

        A link leaves ``ACTIVE`` for good, and one that joins the table (``ACTIVE``)
        changes ``directs_changes``: tuning here is tuning on the first tick of a divisor.
        """
        config = self._ctx.config
        interval = config.tick_interval
        far = config.far_tick_divisor
        tune_acks = config.ack_tuning
        salts = self._salts_for(own, changes)
        turns: list[_Turn] = []
        for pid, link in self._table.directs.items():
            divisor = divisors.get(pid, far)
            if link.state is LinkState.ACTIVE and tune_acks and link.ack_divisor != divisor:
                # our ACKs wait for the next datagram we send the peer: every divisor-th tick
                link.ack_divisor = divisor
                _quicshim.tune_ack_delay(link.quic, config.ack_delay + (divisor - 1) * interval)
            cycle = divisor if link.identity is not None else 1  # unknown: every tick
            phase = salts[pid] % cycle if cycle > 1 else 0
            limit = _datagram_limit(link, config.max_datagram_payload)
            turns.append((pid, link, cycle, phase, (divisor + 0.5) * interval, limit))
        self._turns = turns
        self._turns_of = (divisors, changes, own)

    def _salts_for(self, own: int, changes: int) -> dict[str, int]:
        """:func:`pair_salt` of our character ``own`` with each direct peer's (0: unknown)."""
        if self._salts_of != (own, changes):
            self._salts = {
                pid: pair_salt(own, link.identity.character_id if link.identity else 0)
                for pid, link in self._table.directs.items()
            }
            self._salts_of = (own, changes)
        return self._salts

    def _interest(self, own: PositionUpdateMessage, here: int | None) -> _Divisors:
        """Tick divisor of each direct peer in our location (others: absent).

        Ranking every peer by distance is the dearest part of a tick in a crowd, and
        positions move little in a few ticks: the answer is kept for
        ``INTEREST_REUSE_TICKS`` ticks while our location and the set of peers stay
        the same.
        """
        table = self._table
        cached = self._divisors
        if (
            cached is not None
            and self._ticks - cached.tick < INTEREST_REUSE_TICKS
            and cached.here == here
            and (cached.changes == table.directs_changes or cached.peers == table.directs.keys())
        ):
            return cached
        changes = table.directs_changes
        ranked = self._rank(own, here, changes)
        if cached is not None and ranked == cached.divisors:
            ranked = cached.divisors  # the same answer: the schedule built for it stands
        divisors = _Divisors(self._ticks, here, changes, frozenset(table.directs), ranked)
        self._divisors = divisors
        return divisors

    def _rank(self, own: PositionUpdateMessage, here: int | None, changes: int) -> dict[str, int]:
        locations = self._locations
        config = self._ctx.config
        directs = self._table.directs
        if len(directs) <= config.full_rate_peers:  # every peer here gets every tick
            return {pid: 1 for pid in directs if here is None or locations.get(pid, here) == here}
        positions = self._inbox.positions
        salts = self._salts_for(own.character_id, changes)
        peers = {
            pid: (positions.get(pid), salts[pid])
            for pid in directs
            if here is None or locations.get(pid, here) == here  # else: far_tick_divisor
        }
        p = own.position
        return tick_divisors(
            (p.x, p.y, p.z),
            peers,
            full_rate_peers=config.full_rate_peers,
            rate_band=config.rate_band,
            max_tick_divisor=config.max_tick_divisor,
        )


def _datagram_limit(link: Link, max_payload: int) -> int | None:
    """The largest movement batch ``link``'s peer takes (None: it takes no DATAGRAM frames).

    Fixed once the handshake is done (the peer's transport parameters): an ``ACTIVE`` link's
    is read once per schedule, not per tick."""
    remote = _quicshim.remote_max_datagram_frame_size(link.quic)
    return None if remote is None else min(max_payload, remote - 4)
