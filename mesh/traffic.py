"""Message and movement delivery of :class:`mesh.core.MeshCore` (a mixin, sans-I/O).

Split from the core along the seam "connections and reliability" versus "what
the application sees": type filtering, sender attribution and movement.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from typing import Any

from mesh import _quicshim
from mesh.auth import PeerIdentity
from mesh.config import PEER_MESSAGE_TYPES, MeshConfig
from mesh.events import CoreEvent, MessageDelivered, Path, PositionReceived
from mesh.link import Link
from mesh.movement import (
    MovementInbox,
    MovementOutbox,
    Point,
    pair_salt,
    split_batches,
    tick_divisors,
)
from protocol.errors import ProtocolError
from protocol.messages.base import BaseMessage
from protocol.messages.location import PositionUpdateMessage
from protocol.movement import decode_movement_batch

__all__ = ["TrafficMixin", "attribute"]

logger = logging.getLogger("mesh.core")

_SENDER_FIELDS = (("sender_id", "character_id"), ("sender_name", "character_name"))


def attribute(message: BaseMessage, identity: PeerIdentity) -> BaseMessage:
    """``message`` with its sender fields set to the authenticated ``identity``.

    ``sender_id``/``sender_name`` (chat-like messages) and ``character_id`` (MOVE)
    are overwritten, never believed.
    """
    fields = type(message).model_fields
    update: dict[str, Any] = {}
    for name, source in _SENDER_FIELDS:
        if name in fields:
            update[name] = getattr(identity, source)
    if "character_id" in fields and "sender_id" not in fields:
        update["character_id"] = identity.character_id
    return message.model_copy(update=update) if update else message


class TrafficMixin:
    """Delivery to the application: attribution, type filter, movement in and out."""

    config: MeshConfig
    stats: dict[str, int]
    _events: deque[CoreEvent]
    _active: dict[str, Link]
    _locations: dict[str, int]
    _outbox: MovementOutbox
    _inbox: MovementInbox
    _next_tick: float | None
    _last_tick: float | None
    _ticks: int
    location_id: int | None

    def _peer_moved(self, pid: str, location_id: int, now: float) -> None:
        raise NotImplementedError

    def _deliver(self, identity: PeerIdentity, message: BaseMessage, path: Path) -> None:
        if message.type not in PEER_MESSAGE_TYPES:
            self.stats["rejected_messages"] += 1
            logger.debug(
                "dropping %s from peer %s: not a peer message type",
                message.type,
                identity.peer_id[:12],
            )
            return
        self._events.append(MessageDelivered(identity, attribute(message, identity), path))

    def _on_datagram(self, link: Link, data: bytes, now: float) -> None:
        identity = link.identity
        if not link.authenticated or identity is None:
            self.stats["bad_datagrams"] += 1
            return
        try:
            updates = decode_movement_batch(data)
        except ProtocolError as exc:
            self.stats["bad_datagrams"] += 1
            logger.debug("bad datagram from %s dropped: %s", link.describe(), exc)
            return
        link.last_activity = now
        for update in updates:
            if update.character_id != identity.character_id:
                self.stats["spoofed_updates"] += 1
                continue
            if self._inbox.accept(identity.peer_id, update, now):
                if self._locations.get(identity.peer_id) != update.location_id:
                    self._peer_moved(identity.peer_id, update.location_id, now)
                self._events.append(PositionReceived(identity, update))

    def _flush_movement(self, now: float) -> None:
        """One movement tick: the newest updates to every peer whose turn it is.

        Rates follow interest (:func:`mesh.movement.tick_divisors`); a peer
        skipped is owed the newest updates: if nothing newer is queued within two
        ticks, a catch-up tick sends them to every peer still owed.
        """
        outbox = self._outbox
        updates = outbox.take()
        self._next_tick = None
        if not updates:
            # nothing new for two ticks: every peer still owed our newest gets it now;
            # the tick clock is left alone, so this never holds back the next update
            if outbox.owed:
                self._send_movement(outbox.latest, outbox.owed, now)
                outbox.owed = set()
            return
        self._last_tick = now
        self._ticks += 1
        ticks = self._ticks
        config = self.config
        here = self.location_id
        own = updates[-1]
        divisors = self._interest(own, here)
        owed: set[str] = set()
        due: list[str] = []
        for pid, link in self._active.items():
            if link.closing or link.terminated:
                continue
            divisor = divisors.get(pid, config.far_tick_divisor)
            identity = link.identity
            if divisor > 1 and identity is not None:
                if (ticks + pair_salt(own.character_id, identity.character_id)) % divisor:
                    owed.add(pid)
                    continue
            due.append(pid)
        self._send_movement(updates, due, now)
        outbox.owed = owed
        if owed:  # a catch-up tick, unless a newer update comes first
            self._next_tick = now + 2 * config.tick_interval

    def _send_movement(
        self, updates: list[PositionUpdateMessage], peers: Iterable[str], now: float
    ) -> None:
        config = self.config
        cache: dict[int, list[bytes]] = {}
        for pid in peers:
            link = self._active.get(pid)
            if link is None or link.closing or link.terminated:
                continue
            remote = _quicshim.remote_max_datagram_frame_size(link.quic)
            if remote is None:
                continue
            limit = min(config.max_datagram_payload, remote - 4)
            batches = cache.get(limit)
            if batches is None:
                batches = cache[limit] = split_batches(updates, limit)
            quic = link.quic
            for batch in batches:
                quic.send_datagram_frame(batch)
            _quicshim.trim_pending_datagrams(quic, config.max_pending_datagrams)
            if config.ack_tuning:
                _quicshim.piggyback_ack(quic, now)

    def _interest(self, own: PositionUpdateMessage, here: int | None) -> dict[str, int]:
        """Tick divisor of each active peer in our location (others: absent)."""
        locations = self._locations
        positions = self._inbox.positions
        config = self.config
        peers: dict[str, tuple[Point | None, int]] = {}
        for pid, link in self._active.items():
            if here is not None and locations.get(pid, here) != here:
                continue  # another location: far_tick_divisor
            identity = link.identity
            cid = identity.character_id if identity is not None else 0
            peers[pid] = (positions.get(pid), pair_salt(own.character_id, cid))
        p = own.position
        return tick_divisors(
            (p.x, p.y, p.z),
            peers,
            full_rate_peers=config.full_rate_peers,
            rate_band=config.rate_band,
            max_tick_divisor=config.max_tick_divisor,
        )
