"""The sans-I/O mesh node: every QUIC connection of one UDP endpoint, and what flows on them.

:class:`MeshCore` performs no I/O and reads no clock. A driver (the asyncio
:class:`mesh.node.PeerNode`, or a virtual-time test) feeds it with:

* :meth:`~MeshCore.receive_datagram` for each UDP datagram (with the ``recvfrom`` address),
* :meth:`~MeshCore.handle_timer` when :meth:`~MeshCore.get_timer` is due,
* the API calls (:meth:`~MeshCore.connect`, :meth:`~MeshCore.send_reliable`,
  :meth:`~MeshCore.queue_position`, ...),

and after each of these sends :meth:`~MeshCore.datagrams_to_send`, re-reads
:meth:`~MeshCore.get_timer` and drains :meth:`~MeshCore.next_event`.

The core is composed of parts, each with its own state and a small interface
(``docs/mesh-core.md`` draws them):

* :class:`~mesh.router.LinkTable` (``_table``): the links, datagram routing by
  connection id, each peer's direct link, where links are made;
* :class:`~mesh.admission.PeerDirectory` (``_directory``) and
  :class:`~mesh.admission.Admission` (``_admission``): what is known of each
  peer, the duplicate tie-break, credential renewal and expiry;
* :class:`~mesh.reliable.ReliableDelivery` (``_reliable``): reliable messages,
  their paths (direct, dial, relay), resends and acks;
* :class:`~mesh.datagrams.MovementScheduler` (``_movement``): movement ticks out,
  newest-wins in;
* :class:`~mesh.multipath.PathChooser` (``_paths``): which link carries a peer
  reached both directly and over TURN, and when a path is silent.

The core itself runs each link's life (:class:`~mesh.link.LinkState`): it reads
aioquic's events, feeds the peer handshake (:mod:`mesh.handshake`) and the
control stream, closes links that misbehave, and applies the area-of-interest
policy (who stays connected when peers move or the node is over capacity).

Policy decisions documented here:

* Identity: a message's ``sender_id``/``sender_name`` (and a MOVE's
  ``character_id``) are *overwritten* with the authenticated peer's; a movement
  update for another character than the peer's own is dropped.
* Only :data:`PEER_MESSAGE_TYPES` are accepted on the reliable channel; others
  are acknowledged and dropped.
* Simultaneous dial: one link per peer survives (:mod:`mesh.admission`); the
  other is closed with :attr:`CloseCode.DUPLICATE`.
* An Initial to an unknown connection id opens a connection only if
  :mod:`mesh.gate` admits it (QUIC Retry under pressure, per-source limits).
* No session tickets, hence no 0-RTT: 0-RTT data is replayable and would arrive
  before the peer handshake.
* A peer's ticket is checked when a connection is authenticated, and the
  connection is closed (:attr:`CloseCode.TICKET_EXPIRED`) when it expires,
  unless the peer presented a renewed one (:mod:`mesh.admission`).
"""

from __future__ import annotations

import logging
from collections import deque

from aioquic.buffer import Buffer  # type: ignore[attr-defined]  # re-exported, untyped
from aioquic.quic import events as qe
from aioquic.quic.packet import pull_quic_header

from mesh.admission import Admission, Admitted, PeerDirectory
from mesh.auth import Authenticator, PeerIdentity
from mesh.certs import ALPN
from mesh.config import PEER_MESSAGE_TYPES, MeshConfig
from mesh.context import CoreContext
from mesh.datagrams import MovementInfo, MovementScheduler
from mesh.events import CoreEvent, DialFailed, PeerDisconnected
from mesh.gate import InitialGate
from mesh.handshake import CloseCode, HandshakeFailure
from mesh.link import Link, LinkInfo, LinkState
from mesh.multipath import PathChooser
from mesh.paths import Path, Route, route_address
from mesh.quality import ConnectionQuality, connection_quality
from mesh.reliable import ReliableDelivery
from mesh.router import LinkTable
from mesh.streams import KIND_CONTROL
from protocol.codec import deserialize
from protocol.crypto import Identity
from protocol.errors import CryptoError, MeshError, PeerUnreachableError, ProtocolError
from protocol.messages.base import BaseMessage
from protocol.messages.location import PositionUpdateMessage
from protocol.messages.peer import PeerAckMessage, PeerHelloMessage

__all__ = ["PEER_MESSAGE_TYPES", "MeshConfig", "MeshCore"]

logger = logging.getLogger("mesh.core")

_MAX_SEEN_FAILURES = 256


class MeshCore:
    """The node's state machine (see the module docstring)."""

    def __init__(
        self,
        identity: Identity,
        auth: Authenticator,
        *,
        config: MeshConfig | None = None,
        relay_enabled: bool = False,
    ) -> None:
        ctx = self._ctx = CoreContext(
            identity, auth, config or MeshConfig(), relay_enabled=relay_enabled
        )
        self.identity = identity
        self.auth = auth
        self.config = ctx.config
        self.stats = ctx.stats
        """Counters of what hostile or broken peers sent (:data:`mesh.context.STAT_NAMES`)."""
        self.location_id: int | None = None
        self._table = LinkTable(ctx)
        self._gate = self._table.gate  # both read on every flush (one object each, for life)
        self._touched = self._table.touched
        self._directory = PeerDirectory()
        self._admission = Admission(ctx, self._table, self._directory)
        self._reliable = ReliableDelivery(ctx, self._table, self._admission)
        self._movement = MovementScheduler(
            ctx, self._table, self._directory.locations, self._peer_moved
        )
        self._ping_ids = 0
        self._seen_failures: dict[tuple[str, int], None] = {}
        self._paths = PathChooser(ctx, self._table, self._directory, self._reliable)
        # the soonest deadline of the sources that change only with a reliable send, a
        # link's life, a path switch, a credential or the clock offset (reliable sends,
        # direct retries, credential expiry); recomputed by get_timer once stale. Every
        # entry point that may change them marks it stale; the movement hot path
        # (a datagram in, a tick, a flush of DATAGRAM frames) never does
        self._slow_timer: float | None = None
        self._slow_stale = True

    @property
    def relay_enabled(self) -> bool:
        """Whether a relay transport takes what no direct path delivers (fixed at creation)."""
        return self._ctx.relay_enabled

    @property
    def gate(self) -> InitialGate:
        """The admission of new inbound connections (:mod:`mesh.gate`; its ``stats``)."""
        return self._table.gate

    @property
    def wall_offset(self) -> float:
        """Add to ``now`` to get Unix time (credentials expire in Unix time; ``now`` may be
        a monotonic clock). The driver keeps it current."""
        return self._ctx.wall_offset

    @wall_offset.setter
    def wall_offset(self, value: float) -> None:
        self._ctx.wall_offset = value
        self._slow_stale = True  # credential expiry is in Unix time

    # driving ------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Route, now: float) -> None:
        """Route one UDP datagram to its connection (or accept a new one).

        ``addr``: its source, or a :class:`~mesh.paths.TurnRoute` for one our TURN
        allocation relayed (the connection id decides the link either way)."""
        if self._ctx.closed:
            return
        link = self._table.route_short(data)  # an established connection's packet
        if link is None:
            self._slow_stale = True  # a new link, maybe
            try:
                header = pull_quic_header(
                    Buffer(data=data), host_cid_length=self._ctx.config.connection_id_length
                )
            except ValueError:
                self._ctx.stats["dropped_packets"] += 1
                return
            link = self._table.route(header.destination_cid)
        if link is None:
            link = self._table.accept_initial(header, len(data), addr, now)
            if link is None:
                return
        if link.state is LinkState.TERMINATED:
            return
        link.quic.receive_datagram(data, addr, now)
        link.last_rx = now
        link.bytes_received += len(data)
        paths = self._paths
        if paths.silent or self._table.spares:  # else heard() has nothing to change
            self._slow_stale = True  # a spare heard again carries its peer's sends
            paths.heard(link, now)
        if link.quic.events:  # none after most datagrams: spare the call
            self._process(link, now)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Route]]:
        """Every datagram the connections want to send now, with its destination."""
        gate = self._gate
        out: list[tuple[bytes, Route]] = gate.datagrams_to_send() if gate.outbox else []
        # only touched links can have anything (MeshQuicConnection.watch); popped until
        # none is left, so links touched meanwhile (by _process below) are flushed too
        touched = self._touched
        while touched:
            link = touched.pop()
            if link.state is LinkState.TERMINATED:
                continue
            datagrams = link.quic.datagrams_to_send(now=now)
            if datagrams:
                sent = 0
                for data, _ in datagrams:  # a loop, not sum() of a listcomp: no call
                    sent += len(data)
                link.bytes_sent += sent
                if out:
                    out.extend(datagrams)
                else:  # the first (most flushes: the only) link's list, a new one each call
                    out = datagrams
            if link.quic.events:  # none after most flushes: spare the call
                self._process(link, now)
        return out

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must run next (call it after every send)."""
        # read after every flush: the per-link timers come cached from the table, the
        # rarely changing sources from _slow_timer, recomputed only once marked stale
        if self._slow_stale:
            times: list[float] = []
            self._reliable.timers(times)
            self._paths.timers(times)
            expiry = self._admission.next_expiry()
            if expiry is not None:
                times.append(expiry)
            self._slow_timer = min(times) if times else None
            self._slow_stale = False
        soonest = self._slow_timer
        for at in (self._table.next_timer(), self._movement.next_tick):
            if at is not None and (soonest is None or at < soonest):
                soonest = at
        return soonest

    def handle_timer(self, now: float) -> None:
        """Run everything due at ``now``: QUIC timers, dial timeouts, keepalives, ticks,
        credential expiry."""
        self._slow_stale = True  # whatever is due below changes them
        for link in self._admission.expired(now):
            logger.info(
                "peer %s: credential expired, closing the connection", (link.peer_id or "?")[:12]
            )
            self._drop_direct(link, CloseCode.TICKET_EXPIRED, "ticket expired", now)
        # only links whose own timer is due: the others have nothing to do (a tick would
        # otherwise visit every idle link of a crowded area)
        for link in self._table.due(now):
            state = link.state
            if state is LinkState.TERMINATED:
                continue
            if (
                state is LinkState.HANDSHAKING
                and link.dial_deadline is not None
                and now >= link.dial_deadline
            ):
                self._fail_link(link, CloseCode.HANDSHAKE_TIMEOUT, "handshake timeout", now)
            if link.next_ping_at is not None and now >= link.next_ping_at and link.is_open:
                keepalive = self._ctx.config.keepalive_interval
                # the peer's own movement or messages lately already refresh both idle
                # timers (ours on receipt, its own on our ACKs): a PING would be a packet more
                if now - link.last_activity >= keepalive:
                    self._ping_ids += 1
                    link.quic.send_ping(self._ping_ids)
                else:
                    self._table.retime(link)  # no call on the connection re-reads its timer
                link.next_ping_at = now + keepalive
                self._admission.present_renewal(link, now)
            probe = link.probe_at()
            if probe is not None and now >= probe:
                self._paths.probe(link, now)
            due = link.quic.get_timer()  # None before connect
            if due is not None and now >= due:
                link.quic.handle_timer(now)
            self._process(link, now)
        tick = self._movement.next_tick
        if tick is not None and now >= tick:
            self._movement.tick(now, self.location_id)
        self._reliable.service(now)
        self._paths.service(now)

    def tick_movement(self, now: float) -> None:
        """Run only the movement tick, if it is due at ``now``: the part of
        :meth:`handle_timer` a driver needs right after :meth:`queue_position` returned a
        due tick. Anything else due is left to the driver's next :meth:`get_timer` read."""
        tick = self._movement.next_tick
        if tick is not None and now >= tick:
            self._movement.tick(now, self.location_id)

    def next_event(self) -> CoreEvent | None:
        """The next event for the driver, or None."""
        events = self._ctx.events
        return events.popleft() if events else None

    @property
    def events(self) -> deque[CoreEvent]:
        """The queue :meth:`next_event` pops (one object for the core's life): a driver may
        keep it and drain it directly, without a call per event."""
        return self._ctx.events

    # API ----------------------------------------------------------------------

    @property
    def peers(self) -> dict[str, PeerIdentity]:
        """Authenticated peers with a live direct connection, by peer id."""
        return {pid: link.identity for pid, link in self._table.directs.items() if link.identity}

    def known_peer(self, target: str | int) -> PeerIdentity | None:
        """A peer we hold a verified credential of, by peer id or character id."""
        return self._directory.lookup(target)

    def add_peer(self, credential: str, endpoint: Route | None, now: float) -> PeerIdentity:
        """Remember a peer from its credential (verified now) and where to dial it."""
        self._slow_stale = True
        identity = self._admission.verify(credential, now)
        if endpoint is not None:
            self._directory.endpoints[identity.peer_id] = endpoint
        return identity

    def connect(
        self, credential: str | None, addr: Route, now: float, path: Path = "direct"
    ) -> int:
        """Dial ``addr``; returns a dial id reported by PeerConnected / DialFailed.

        With a credential, the peer must be the one it names (raises a
        ``CryptoError`` subclass now if the credential itself is invalid).
        ``path="turn"``: ``addr`` is the peer's relayed address on a TURN server; the
        link is kept beside a direct one, and used when that one goes silent.
        """
        self._slow_stale = True
        if self._ctx.closed:
            raise MeshError("the node is closed")
        expected: PeerIdentity | None = None
        if credential is not None:
            expected = self.add_peer(credential, addr if path == "direct" else None, now)
            if expected.peer_id == self._ctx.identity.peer_id:
                raise MeshError("refusing to connect to ourselves")
        return self._table.dial(addr, expected.peer_id if expected else None, now, path)

    def disconnect_peer(self, peer_id: str, now: float, reason: str = "disconnected") -> bool:
        """Close the direct connection to ``peer_id`` (announced as a departure)."""
        self._slow_stale = True
        link = self._table.direct(peer_id)
        if link is None:
            return False
        self._drop_direct(link, CloseCode.NORMAL, reason, now)
        return True

    def set_location(self, location_id: int | None, now: float) -> None:
        """Our area of interest; peers elsewhere are dropped first when over capacity."""
        self._slow_stale = True
        self.location_id = location_id
        self._enforce_capacity(now)

    def set_peer_location(self, target: str | int, location_id: int, now: float) -> None:
        """What the lobby says about a peer's location (movement updates also set it)."""
        identity = self.known_peer(target)
        if identity is not None:
            self._peer_moved(identity.peer_id, location_id, now)

    def send_reliable(self, target: str | int, message: BaseMessage, now: float) -> int:
        """Queue ``message`` for reliable delivery to a peer (peer id or character id).

        Returns a handle settled by a :class:`SendSettled` event. Raises
        :class:`PeerUnreachableError` at once when the peer is unknown,
        :class:`InvalidMessageError` for a type outside :data:`PEER_MESSAGE_TYPES`
        and :class:`MessageTooLargeError` over :data:`MAX_PAYLOAD_SIZE`.
        """
        self._slow_stale = True
        if self._ctx.closed:
            raise MeshError("the node is closed")
        return self._reliable.send(target, message, now)

    def receive_relayed(self, data: bytes, now: float) -> None:
        """Take one relay envelope (from the relay transport); bad ones are dropped."""
        self._slow_stale = True
        self._reliable.receive_relayed(data, now)

    def queue_position(self, update: PositionUpdateMessage, now: float) -> float:
        """Queue our position for the next movement tick (newest wins); returns when that tick
        is due (``<= now``: at once, a driver may run :meth:`tick_movement` before its flush)."""
        tick = self._movement.queue(update, now)
        if update.location_id != self.location_id:
            self.set_location(update.location_id, now)  # capacity only: the tick stays
        return tick

    def close(self, now: float) -> None:
        """Close every connection and fail every pending send."""
        self._slow_stale = True
        if self._ctx.closed:
            return
        for link in self._table:
            if link.state is LinkState.ACTIVE:
                self._drop_direct(link, CloseCode.NORMAL, "node closing", now)
            else:
                link.close(CloseCode.NORMAL, "node closing")
        self._reliable.fail_all(PeerUnreachableError("the node closed"))
        self._ctx.closed = True

    # inspection ---------------------------------------------------------------------

    def links(self) -> list[LinkInfo]:
        """A snapshot of every link not yet terminated (any state)."""
        return [link.info() for link in self._table]

    def link_info(self, peer_id: str) -> LinkInfo | None:
        """A snapshot of the link that carries ``peer_id`` now, if it has one."""
        link = self._table.direct(peer_id)
        return link.info() if link is not None else None

    def has_path(self, peer_id: str, path: Path) -> bool:
        """``peer_id`` has an ``ACTIVE`` link on ``path`` (in use or spare)."""
        return self._table.active(peer_id, path) is not None

    def spare_info(self, peer_id: str) -> LinkInfo | None:
        """A snapshot of ``peer_id``'s spare link (the other path kind), if it has one."""
        link = self._table.spares.get(peer_id)
        return link.info() if link is not None else None

    def connection_quality(self, target: str | int, now: float) -> ConnectionQuality | None:
        """How a connected peer (peer id or character id) is reached now: path, RTT,
        loss, bytes each way (:class:`~mesh.quality.ConnectionQuality`); None when it
        is unknown or neither a direct link nor the relay connects it."""
        identity = self._directory.lookup(target)
        if identity is None:
            return None
        pid = identity.peer_id
        path = self._reliable.path_in_use(pid, now)
        if path is None:
            return None
        return connection_quality(
            identity,
            path,
            self._table.direct(pid),
            self._reliable.relay_traffic(pid),
            self._reliable.pending(pid),
            now,
        )

    def connection_qualities(self, now: float) -> dict[str, ConnectionQuality]:
        """:meth:`connection_quality` of every connected peer, by peer id."""
        out: dict[str, ConnectionQuality] = {}
        for pid in [*self._table.directs, *self._reliable.relay_peers()]:
            if pid not in out and (quality := self.connection_quality(pid, now)) is not None:
                out[pid] = quality
        return out

    def movement_info(self) -> MovementInfo:
        """A snapshot of the movement schedule and its queues."""
        return self._movement.info()

    def pending_sends(self, peer_id: str) -> int:
        """Reliable messages to ``peer_id`` not acknowledged yet."""
        return self._reliable.pending(peer_id)

    # link life ----------------------------------------------------------------------

    def _process(self, link: Link, now: float) -> None:
        table = self._table
        events = link.quic.events
        while events:
            event = events.popleft()
            if type(event) is qe.DatagramFrameReceived:  # the hot one: movement, by far
                state = link.state  # is_open, inlined
                if state is LinkState.ACTIVE or state is LinkState.HANDSHAKING:
                    self._movement.receive(link, event.data, now)
                continue
            self._slow_stale = True  # anything else may settle a send or end a link
            if isinstance(event, qe.ConnectionIdIssued):
                table.register_cid(link, event.connection_id)
            elif isinstance(event, qe.ConnectionIdRetired):
                table.retire_cid(link, event.connection_id)
            elif isinstance(event, qe.ConnectionTerminated):
                self._on_terminated(link, event, now)
                return
            elif not link.is_open:
                continue
            elif isinstance(event, qe.HandshakeCompleted):
                self._on_tls_done(link, event, now)
            elif isinstance(event, qe.StreamDataReceived):
                self._guard(link, event, now)
            elif isinstance(event, qe.StreamReset | qe.StopSendingReceived):
                if event.stream_id == link.stream_id:
                    self._fail_link(link, CloseCode.PROTOCOL_VIOLATION, "control stream reset", now)

    def _guard(self, link: Link, event: qe.StreamDataReceived, now: float) -> None:
        try:
            self._on_stream(link, event, now)
        except HandshakeFailure as exc:
            self._fail_link(link, exc.code, exc.reason, now)
        except CryptoError as exc:
            self._fail_link(link, CloseCode.HANDSHAKE_FAILED, str(exc), now)
        except ProtocolError as exc:
            self._fail_link(link, CloseCode.PROTOCOL_VIOLATION, str(exc), now)

    def _on_tls_done(self, link: Link, event: qe.HandshakeCompleted, now: float) -> None:
        if event.alpn_protocol != ALPN:
            self._fail_link(link, CloseCode.PROTOCOL_VIOLATION, "wrong ALPN", now)
            return
        if link.is_client:
            try:
                for message in link.handshake.start(self._ctx.wall(now)):
                    link.send_control(message)
            except CryptoError as exc:
                self._fail_link(link, CloseCode.HANDSHAKE_FAILED, f"own credential: {exc}", now)

    def _on_stream(self, link: Link, event: qe.StreamDataReceived, now: float) -> None:
        if link.stream_id is None and not link.is_client and event.stream_id == 0:
            link.stream_id = 0
        if event.stream_id != link.stream_id:
            raise ProtocolError(f"data on unexpected stream {event.stream_id}")
        if event.end_stream:
            raise ProtocolError("control stream ended")
        for kind, body in link.decoder.feed(event.data):
            if not link.is_open:
                return
            active = link.state is LinkState.ACTIVE
            if kind == KIND_CONTROL:
                message = deserialize(body)
                if not link.handshake.done:
                    for reply in link.handshake.receive(message, self._ctx.wall(now)):
                        link.send_control(reply)
                    if link.handshake.done:
                        self._on_authenticated(link, now)
                elif isinstance(message, PeerAckMessage) and link.identity is not None:
                    self._reliable.on_ack(link.identity.peer_id, message.ref_id, link.path)
                elif isinstance(message, PeerHelloMessage) and active:
                    self._admission.on_renewal(link, message, now)
                else:
                    raise ProtocolError(f"unexpected {message.type} after the handshake")
            else:
                if not active or link.identity is None:
                    raise ProtocolError("DATA before authentication")
                link.last_activity = now
                self._reliable.on_data(link.identity, body, link.path, link, now)

    def _on_authenticated(self, link: Link, now: float) -> None:
        outcome = self._admission.admit(link, now)
        pid = link.peer_id
        if outcome is Admitted.DUPLICATE or pid is None:
            return
        # a direct link that just completed both handshakes works: it carries the peer; a
        # TURN one beside a link in use takes over only from a link gone silent
        self._paths.added(link, now, spare=outcome is Admitted.ADDED)
        if outcome is Admitted.ADDED:
            self._close_spare_dials(pid, link, now)
            return
        if self._table.direct(pid) is link:
            self._reliable.resend_direct(pid, link, now)
        self._close_spare_dials(pid, link, now)
        if outcome is Admitted.CONNECTED:
            self._enforce_capacity(now)

    def _close_spare_dials(self, pid: str, winner: Link, now: float) -> None:
        """``pid`` is connected by ``winner``: our other dials to it that nothing has
        answered yet (a hole punch tries every candidate address at once) are closed
        now rather than left to retransmit until their deadline. A dial the peer did
        answer is left to finish: the peer may hold it as its link, and the
        simultaneous-dial tie-break decides between the two on both sides alike."""
        for link in self._table:
            if (
                link is not winner
                and link.is_client
                and link.state is LinkState.HANDSHAKING
                and link.expected_peer_id == pid
                and link.bytes_received == 0
            ):
                link.close(CloseCode.DUPLICATE, "another path connected")
                self._dial_failed(link, int(CloseCode.DUPLICATE), "another path connected", now)

    def _fail_link(self, link: Link, code: CloseCode, reason: str, now: float) -> None:
        if not link.is_open:
            return
        who = link.describe()
        # a remote can trigger this at will: one WARNING per (address, code), then DEBUG
        key = (str(route_address(link.addr)[0]), int(code))
        level = logging.DEBUG if key in self._seen_failures else logging.WARNING
        self._seen_failures[key] = None
        while len(self._seen_failures) > _MAX_SEEN_FAILURES:
            self._seen_failures.pop(next(iter(self._seen_failures)))
        logger.log(level, "closing connection %s: %s (code %#x)", who, reason, int(code))
        if link.state is LinkState.ACTIVE:
            self._drop_direct(link, code, reason, now)
            return
        link.close(code, reason)
        self._dial_failed(link, int(code), reason, now)

    def _dial_failed(self, link: Link, code: int, reason: str, now: float) -> None:
        if link.dial_id is not None:
            self._ctx.events.append(DialFailed(link.dial_id, link.expected_peer_id, code, reason))
            link.dial_id = None
        if link.expected_peer_id is not None:
            self._reliable.dial_failed(link.expected_peer_id, now)

    def _on_terminated(self, link: Link, event: qe.ConnectionTerminated, now: float) -> None:
        was = link.state
        link.terminated()
        self._table.remove(link)
        self._admission.forget(link)
        reason = event.reason_phrase or f"code {event.error_code:#x}"
        if was is LinkState.ACTIVE:
            # one of two paths ending is no departure: the other carries the peer on
            if not self._paths.ended(link, reason, now):
                self._peer_gone(link, event.error_code, reason, now, redial=True)
        elif was is LinkState.HANDSHAKING:
            logger.info("connection %s ended before authentication: %s", link.describe(), reason)
            self._dial_failed(link, event.error_code, reason, now)
        elif link.dial_id is not None:
            self._dial_failed(link, event.error_code, reason, now)

    # area of interest ---------------------------------------------------------------

    def _peer_moved(self, pid: str, location_id: int, now: float) -> None:
        """A peer's location changed: one leaving our area is disconnected and announced."""
        self._slow_stale = True
        locations = self._directory.locations
        old = locations.get(pid)
        locations[pid] = location_id
        here = self.location_id
        link = self._table.direct(pid)
        if (
            self._ctx.config.disconnect_on_leave
            and link is not None
            and here is not None
            and old == here
            and location_id != here
        ):
            self._drop_direct(
                link, CloseCode.NORMAL, "left the area", now, left=(here, location_id)
            )
        self._enforce_capacity(now)

    def _drop_direct(
        self,
        link: Link,
        code: int,
        reason: str,
        now: float,
        *,
        left: tuple[int, int] | None = None,
    ) -> None:
        """Close the ``ACTIVE`` ``link`` (and its peer's other link) ourselves and report its
        peer gone."""
        close_code = CloseCode(code) if code in CloseCode._value2member_map_ else CloseCode.NORMAL
        pid = link.peer_id
        if pid is not None:
            for other in (self._table.direct(pid), self._table.spares.get(pid)):
                if other is not None and other is not link:
                    other.close(close_code, reason)
                    self._table.unset_direct(other)
        link.close(close_code, reason)
        self._peer_gone(link, code, reason, now, left=left)

    def _peer_gone(
        self,
        link: Link,
        code: int,
        reason: str,
        now: float,
        *,
        redial: bool = False,
        left: tuple[int, int] | None = None,
    ) -> None:
        """``link`` no longer carries its peer: announce it, then redial, relay or fail."""
        identity = link.identity
        if identity is None:  # pragma: no cover - only authenticated links are direct
            return
        pid = identity.peer_id
        self._table.unset_direct(link)
        self._paths.forget(pid)
        logger.info("peer %s (%s) disconnected: %s", pid[:12], identity.character_name, reason)
        self._movement.forget(pid)
        where, to = left if left is not None else (self._directory.locations.get(pid), None)
        self._ctx.events.append(PeerDisconnected(identity, int(code), reason, where, to))
        self._reliable.direct_lost(pid, now, redial=redial)

    def _enforce_capacity(self, now: float) -> None:
        directs = self._table.directs
        excess = len(directs) - self._ctx.config.max_connections
        if excess <= 0:
            return
        here = self.location_id
        locations = self._directory.locations

        def rank(link: Link) -> tuple[bool, float]:
            pid = link.peer_id or ""
            return (here is not None and locations.get(pid) == here, link.last_rx)

        for link in sorted(directs.values(), key=rank)[:excess]:
            self._drop_direct(link, CloseCode.EVICTED, "outside the area of interest", now)
