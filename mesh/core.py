"""The sans-I/O mesh node: every QUIC connection of one UDP endpoint, and what flows on them.

:class:`MeshCore` owns aioquic ``QuicConnection`` objects, demultiplexes the
datagrams of one socket to them by destination connection id, runs the peer
handshake (:mod:`mesh.handshake`), reliable delivery (:mod:`mesh.streams`),
movement (:mod:`mesh.movement`) and the relay fallback (:mod:`mesh.relay`).
It performs no I/O and reads no clock. A driver (the asyncio
:class:`mesh.node.PeerNode`, or a virtual-time test) feeds it with:

* :meth:`receive_datagram` for each UDP datagram (with the ``recvfrom`` address),
* :meth:`handle_timer` when :meth:`get_timer` is due,
* the API calls (:meth:`connect`, :meth:`send_reliable`, :meth:`queue_position`, ...),

and after each of these sends :meth:`datagrams_to_send`, re-reads
:meth:`get_timer` and drains :meth:`next_event`.

Policy decisions documented here:

* Identity: a message's ``sender_id``/``sender_name`` (and a MOVE's
  ``character_id``) are *overwritten* with the authenticated peer's; a movement
  update for another character than the peer's own is dropped.
* Only :data:`PEER_MESSAGE_TYPES` are accepted on the reliable channel; others
  are acknowledged and dropped.
* Simultaneous dial: the connection whose client has the lower peer id wins;
  the other is closed with :attr:`CloseCode.DUPLICATE`.
* No session tickets, hence no 0-RTT: 0-RTT data is replayable and would arrive
  before the peer handshake (docs/architecture.md, "QUIC facts").
* A peer's ticket is checked when a connection is authenticated, and the
  connection is closed (:attr:`CloseCode.TICKET_EXPIRED`) when it expires,
  unless the peer presented a renewed one (:mod:`mesh.admission`).
"""

from __future__ import annotations

import itertools
import logging
import os
import ssl
from collections import OrderedDict, deque

from aioquic.buffer import Buffer  # type: ignore[attr-defined]  # re-exported, untyped
from aioquic.quic import events as qe
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.packet import QuicPacketType, pull_quic_header

from mesh import _quicshim
from mesh.admission import AdmissionMixin
from mesh.auth import Authenticator, PeerIdentity
from mesh.certs import ALPN, make_certificate
from mesh.config import PEER_MESSAGE_TYPES, MeshConfig
from mesh.events import CoreEvent, DialFailed, PeerDisconnected
from mesh.handshake import CloseCode, Handshake, HandshakeFailure
from mesh.link import Address, Link
from mesh.movement import MovementInbox, MovementOutbox
from mesh.streams import (
    EPOCH_SIZE,
    KIND_CONTROL,
    MAX_PAYLOAD_SIZE,
    InboundChannel,
    OutboundChannel,
)
from protocol.codec import deserialize, serialize_bytes
from protocol.crypto import Identity
from protocol.errors import (
    CryptoError,
    InvalidMessageError,
    MeshError,
    MessageTooLargeError,
    PeerUnreachableError,
    ProtocolError,
)
from protocol.messages.base import BaseMessage
from protocol.messages.location import PositionUpdateMessage
from protocol.messages.peer import PeerAckMessage, PeerHelloMessage

__all__ = ["PEER_MESSAGE_TYPES", "MeshConfig", "MeshCore"]

logger = logging.getLogger("mesh.core")

_MAX_SEEN_FAILURES = 256


class MeshCore(AdmissionMixin):
    """The node's state machine (see the module docstring)."""

    def __init__(
        self,
        identity: Identity,
        auth: Authenticator,
        *,
        config: MeshConfig | None = None,
        relay_enabled: bool = False,
    ) -> None:
        self.identity = identity
        self.auth = auth
        self.config = config or MeshConfig()
        self.relay_enabled = relay_enabled
        self.location_id: int | None = None
        self.wall_offset = 0.0
        """Add to ``now`` to get Unix time (credentials expire in Unix time; ``now`` may be
        a monotonic clock). The driver keeps it current."""
        cert = make_certificate(identity.signing_key, common_name=identity.peer_id)
        self._server_config = self._quic_config(is_client=False)
        self._server_config.certificate = cert
        self._server_config.private_key = identity.signing_key
        self._epoch = os.urandom(EPOCH_SIZE)
        self._links: set[Link] = set()
        self._touched: set[Link] = set()  # links that may have something to send
        self._timer_stale: set[Link] = set()  # links whose timer may have changed
        self._link_timers: dict[Link, float | None] = {}
        self._by_cid: dict[bytes, Link] = {}
        self._active: dict[str, Link] = {}
        self._known: dict[str, PeerIdentity] = {}
        self._presented: dict[Link, str] = {}
        self._by_character: dict[int, str] = {}
        self._endpoints: dict[str, Address] = {}
        self._locations: dict[str, int] = {}
        self._redial_at: dict[str, float] = {}
        self._was_connected: set[str] = set()
        self._out: dict[str, OutboundChannel] = {}
        self._in: dict[str, OrderedDict[bytes, InboundChannel[BaseMessage]]] = {}
        self._outbox = MovementOutbox(self.config.movement_queue)
        self._inbox = MovementInbox()
        self._next_tick: float | None = None
        self._last_tick: float | None = None
        self._ticks = 0
        self._events: deque[CoreEvent] = deque()
        self._handles = itertools.count(1)
        self._dial_ids = itertools.count(1)
        self._ping_ids = itertools.count(1)
        self._closed = False
        self._seen_failures: dict[tuple[str, int], None] = {}
        self.stats: dict[str, int] = {
            "bad_datagrams": 0,
            "spoofed_updates": 0,
            "dropped_packets": 0,
            "rejected_messages": 0,
            "bad_relay": 0,
        }

    # driving ------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        """Route one UDP datagram to its connection (or accept a new one)."""
        if self._closed:
            return
        try:
            header = pull_quic_header(
                Buffer(data=data), host_cid_length=self.config.connection_id_length
            )
        except ValueError:
            self.stats["dropped_packets"] += 1
            return
        link = self._by_cid.get(header.destination_cid)
        if link is None:
            if (
                header.packet_type != QuicPacketType.INITIAL
                or len(data) < 1200
                or header.version not in self._server_config.supported_versions
                or self._handshaking() >= self.config.max_handshakes
            ):
                self.stats["dropped_packets"] += 1
                return
            link = self._accept(header.destination_cid, addr, now)
        if link.terminated:
            return
        link.quic.receive_datagram(data, addr, now)
        link.last_rx = now
        self._process(link, now)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        """Every datagram the connections want to send now, with its destination."""
        out: list[tuple[bytes, Address]] = []
        touched = self._touched  # only these can have anything (MeshQuicConnection.watch)
        while touched:
            link = touched.pop()
            if link.terminated:
                continue
            out.extend(link.quic.datagrams_to_send(now=now))
            self._process(link, now)
        return out

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must run next (call it after every send)."""
        timers = self._link_timers  # re-read only where the connection was touched
        stale = self._timer_stale
        while stale:
            link = stale.pop()
            if link in self._links:
                timers[link] = link.timer()
            else:
                timers.pop(link, None)
        times = [t for t in timers.values() if t is not None]
        if self._next_tick is not None:
            times.append(self._next_tick)
        times.extend(self._expiry_times())
        for pid, channel in self._out.items():
            reconnect = self._reconnect_due(pid, channel)
            if reconnect is not None:
                times.append(reconnect)
            if not channel.pending:
                continue
            # deadlines grow with seq (push time + send_timeout): the first is the soonest
            times.append(next(iter(channel.pending.values())).deadline)
            if self.relay_enabled:
                for out in channel.pending.values():
                    due = self._relay_due(out)
                    if due is not None:
                        times.append(due)
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        """Run everything due at ``now``: QUIC timers, dial timeouts, keepalives, ticks,
        credential expiry."""
        self._expire(now)
        for link in list(self._links):
            if link.terminated:
                continue
            if (
                not link.authenticated
                and not link.closing
                and link.dial_deadline is not None
                and now >= link.dial_deadline
            ):
                self._fail_link(link, CloseCode.HANDSHAKE_TIMEOUT, "handshake timeout", now)
            if link.next_ping_at is not None and now >= link.next_ping_at and not link.closing:
                link.quic.send_ping(next(self._ping_ids))
                link.next_ping_at = now + self.config.keepalive_interval
                self._present_renewal(link, now)
            if _quicshim.timer_ready(link.quic):
                due = link.quic.get_timer()
                if due is not None and now >= due:
                    link.quic.handle_timer(now)
            self._process(link, now)
        if self._next_tick is not None and now >= self._next_tick:
            self._flush_movement(now)
        self._service_reliable(now)

    def next_event(self) -> CoreEvent | None:
        """The next event for the driver, or None."""
        return self._events.popleft() if self._events else None

    # API ----------------------------------------------------------------------

    @property
    def peers(self) -> dict[str, PeerIdentity]:
        """Authenticated peers with a live direct connection, by peer id."""
        return {pid: link.identity for pid, link in self._active.items() if link.identity}

    def known_peer(self, target: str | int) -> PeerIdentity | None:
        """A peer we hold a verified credential of, by peer id or character id."""
        pid = self._by_character.get(target) if isinstance(target, int) else target
        return self._known.get(pid) if pid is not None else None

    def add_peer(self, credential: str, endpoint: Address | None, now: float) -> PeerIdentity:
        """Remember a peer from its credential (verified now) and where to dial it."""
        identity = self.auth.verify_credential(credential, now=now + self.wall_offset)
        self._learn(identity)
        if endpoint is not None:
            self._endpoints[identity.peer_id] = endpoint
        return identity

    def connect(self, credential: str | None, addr: Address, now: float) -> int:
        """Dial ``addr``; returns a dial id reported by PeerConnected / DialFailed.

        With a credential, the peer must be the one it names (raises a
        ``CryptoError`` subclass now if the credential itself is invalid).
        """
        if self._closed:
            raise MeshError("the node is closed")
        expected: PeerIdentity | None = None
        if credential is not None:
            expected = self.add_peer(credential, addr, now)
            if expected.peer_id == self.identity.peer_id:
                raise MeshError("refusing to connect to ourselves")
        return self._dial(addr, expected.peer_id if expected else None, now)

    def disconnect_peer(self, peer_id: str, now: float, reason: str = "disconnected") -> bool:
        """Close the direct connection to ``peer_id`` (announced as a departure)."""
        link = self._active.get(peer_id)
        if link is None:
            return False
        self._drop_active(link, CloseCode.NORMAL, reason, now)
        return True

    def set_location(self, location_id: int | None, now: float) -> None:
        """Our area of interest; peers elsewhere are dropped first when over capacity."""
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
        if self._closed:
            raise MeshError("the node is closed")
        if message.type not in PEER_MESSAGE_TYPES:
            raise InvalidMessageError(f"{message.type} does not travel peer to peer")
        identity = self.known_peer(target)
        if identity is None:
            raise PeerUnreachableError(f"unknown peer {target!r}: connect to it first")
        payload = serialize_bytes(message)
        if len(payload) > MAX_PAYLOAD_SIZE:
            raise MessageTooLargeError(
                f"message of {len(payload)} bytes (peer messages carry at most {MAX_PAYLOAD_SIZE})"
            )
        channel = self._out.setdefault(identity.peer_id, OutboundChannel(self._epoch))
        handle = next(self._handles)
        try:
            out = channel.push(handle, message.message_id, payload, now + self.config.send_timeout)
        except OverflowError as exc:
            raise PeerUnreachableError(str(exc)) from exc
        self._route(identity.peer_id, [out], now)
        return handle

    def queue_position(self, update: PositionUpdateMessage, now: float) -> None:
        """Queue our position for the next movement tick (newest wins)."""
        self._outbox.put(update)
        if update.location_id != self.location_id:
            self.set_location(update.location_id, now)
        last = self._last_tick
        due = now if last is None else max(now, last + self.config.tick_interval)
        if self._next_tick is None or due < self._next_tick:  # a later catch-up tick waits
            self._next_tick = due

    def close(self, now: float) -> None:
        """Close every connection and fail every pending send."""
        if self._closed:
            return
        for link in list(self._links):
            if link.active:
                self._drop_active(link, CloseCode.NORMAL, "node closing", now)
            else:
                link.close(CloseCode.NORMAL, "node closing")
        for channel in self._out.values():
            for out in channel.drop_all():
                self._settle(out, None, PeerUnreachableError("the node closed"))
        self._closed = True

    # connections --------------------------------------------------------------

    def _quic_config(self, *, is_client: bool) -> QuicConfiguration:
        return QuicConfiguration(
            is_client=is_client,
            alpn_protocols=[ALPN],
            verify_mode=ssl.CERT_NONE,
            idle_timeout=self.config.idle_timeout,
            max_datagram_frame_size=65536,
            connection_id_length=self.config.connection_id_length,
        )

    def _register(self, link: Link, cid: bytes) -> None:
        self._by_cid[cid] = link
        link.cids.add(cid)

    def _accept(self, odcid: bytes, addr: Address, now: float) -> Link:
        quic = _quicshim.MeshQuicConnection(
            configuration=self._server_config, original_destination_connection_id=odcid
        )
        handshake = Handshake(is_client=False, identity=self.identity, auth=self.auth)
        link = Link(
            quic,
            addr,
            is_client=False,
            handshake=handshake,
            now=now,
            dial_deadline=now + self.config.dial_timeout,
        )
        quic.watch(self._touched, link)
        quic.watch(self._timer_stale, link)
        self._links.add(link)
        self._register(link, odcid)
        self._register(link, quic.host_cid)
        return link

    def _dial(self, addr: Address, peer_id: str | None, now: float) -> int:
        dial_id = next(self._dial_ids)
        quic = _quicshim.MeshQuicConnection(configuration=self._quic_config(is_client=True))
        handshake = Handshake(
            is_client=True,
            identity=self.identity,
            auth=self.auth,
            expected_peer_id=peer_id,
            server_key=lambda: _quicshim.peer_certificate_ed25519(quic),
        )
        link = Link(
            quic,
            addr,
            is_client=True,
            handshake=handshake,
            now=now,
            dial_deadline=now + self.config.dial_timeout,
            dial_id=dial_id,
        )
        link.expected_peer_id = peer_id
        quic.watch(self._touched, link)
        quic.watch(self._timer_stale, link)
        self._links.add(link)
        self._register(link, quic.host_cid)
        quic.connect(addr, now=now)
        return dial_id

    def _handshaking(self) -> int:
        return sum(1 for link in self._links if not link.authenticated)

    def _dialing(self, peer_id: str) -> bool:
        return any(
            li.expected_peer_id == peer_id and not li.authenticated and not li.closing
            for li in self._links
        )

    def _process(self, link: Link, now: float) -> None:
        while (event := link.quic.next_event()) is not None:
            if isinstance(event, qe.ConnectionIdIssued):
                self._register(link, event.connection_id)
            elif isinstance(event, qe.ConnectionIdRetired):
                if self._by_cid.get(event.connection_id) is link:
                    del self._by_cid[event.connection_id]
                link.cids.discard(event.connection_id)
            elif isinstance(event, qe.ConnectionTerminated):
                self._on_terminated(link, event, now)
                return
            elif link.closing:
                continue
            elif isinstance(event, qe.HandshakeCompleted):
                self._on_tls_done(link, event, now)
            elif isinstance(event, qe.StreamDataReceived):
                self._guard(link, event, now)
            elif isinstance(event, qe.DatagramFrameReceived):
                self._on_datagram(link, event.data, now)
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
                for message in link.handshake.start(now + self.wall_offset):
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
            if link.closing or link.terminated:
                return
            if kind == KIND_CONTROL:
                message = deserialize(body)
                if not link.handshake.done:
                    for reply in link.handshake.receive(message, now + self.wall_offset):
                        link.send_control(reply)
                    if link.handshake.done:
                        self._on_authenticated(link, now)
                elif isinstance(message, PeerAckMessage) and link.identity is not None:
                    self._on_ack(link.identity.peer_id, message.ref_id, "direct")
                elif isinstance(message, PeerHelloMessage) and link.authenticated:
                    self._on_renewal(link, message, now)
                else:
                    raise ProtocolError(f"unexpected {message.type} after the handshake")
            else:
                if not link.authenticated or link.identity is None:
                    raise ProtocolError("DATA before authentication")
                link.last_activity = now
                self._on_data(link.identity, body, "direct", link, now)

    def _fail_link(self, link: Link, code: CloseCode, reason: str, now: float) -> None:
        if link.closing or link.terminated:
            return
        who = link.describe()
        # a remote can trigger this at will: one WARNING per (address, code), then DEBUG
        key = (str(link.addr[0]), int(code))
        level = logging.DEBUG if key in self._seen_failures else logging.WARNING
        self._seen_failures[key] = None
        while len(self._seen_failures) > _MAX_SEEN_FAILURES:
            self._seen_failures.pop(next(iter(self._seen_failures)))
        logger.log(level, "closing connection %s: %s (code %#x)", who, reason, int(code))
        if link.active:
            self._drop_active(link, code, reason, now)
            return
        link.close(code, reason)
        self._dial_failed(link, int(code), reason, now)

    def _dial_failed(self, link: Link, code: int, reason: str, now: float) -> None:
        if link.dial_id is not None:
            self._events.append(DialFailed(link.dial_id, link.expected_peer_id, code, reason))
            link.dial_id = None
        pid = link.expected_peer_id
        if pid is not None and pid not in self._active and not self._dialing(pid):
            lost = pid in self._was_connected  # a broken path, not a stranger: retry sooner
            backoff = self.config.reconnect_interval if lost else self.config.redial_backoff
            self._redial_at[pid] = now + backoff
            self._no_direct_path(pid, now)

    def _on_terminated(self, link: Link, event: qe.ConnectionTerminated, now: float) -> None:
        link.terminated = True
        self._links.discard(link)
        self._presented.pop(link, None)
        for cid in link.cids:
            if self._by_cid.get(cid) is link:
                del self._by_cid[cid]
        reason = event.reason_phrase or f"code {event.error_code:#x}"
        if link.active:
            self._drop_active(link, event.error_code, reason, now, redial=True)
        elif not link.authenticated and not link.closing:
            logger.info("connection %s ended before authentication: %s", link.describe(), reason)
            self._dial_failed(link, event.error_code, reason, now)
        elif link.dial_id is not None:
            self._dial_failed(link, event.error_code, reason, now)

    def _peer_moved(self, pid: str, location_id: int, now: float) -> None:
        """A peer's location changed: one leaving our area is disconnected and announced."""
        old = self._locations.get(pid)
        self._locations[pid] = location_id
        here = self.location_id
        link = self._active.get(pid)
        if (
            self.config.disconnect_on_leave
            and link is not None
            and here is not None
            and old == here
            and location_id != here
        ):
            self._drop_active(
                link, CloseCode.NORMAL, "left the area", now, left=(here, location_id)
            )
        self._enforce_capacity(now)

    def _drop_active(
        self,
        link: Link,
        code: int,
        reason: str,
        now: float,
        *,
        redial: bool = False,
        left: tuple[int, int] | None = None,
    ) -> None:
        link.active = False
        if link.identity is None:
            return
        pid = link.identity.peer_id
        if self._active.get(pid) is link:
            del self._active[pid]
        if not link.terminated:
            link.close(
                CloseCode(code) if code in CloseCode._value2member_map_ else CloseCode.NORMAL,
                reason,
            )
        logger.info("peer %s (%s) disconnected: %s", pid[:12], link.identity.character_name, reason)
        self._inbox.forget(pid)
        where, to = left if left is not None else (self._locations.get(pid), None)
        self._events.append(PeerDisconnected(link.identity, int(code), reason, where, to))
        channel = self._out.get(pid)
        endpoint = self._endpoints.get(pid)
        if (
            redial
            and channel is not None
            and channel.pending
            and endpoint is not None
            and now >= self._redial_at.get(pid, now)
            and not self._dialing(pid)
            and not self._closed
        ):
            self._dial(endpoint, pid, now)  # the path broke, not the peer's will: try again
        else:
            self._no_direct_path(pid, now)

    def _enforce_capacity(self, now: float) -> None:
        excess = len(self._active) - self.config.max_connections
        if excess <= 0:
            return
        here = self.location_id

        def rank(link: Link) -> tuple[bool, float]:
            pid = link.peer_id or ""
            return (here is not None and self._locations.get(pid) == here, link.last_rx)

        for link in sorted(self._active.values(), key=rank)[:excess]:
            self._drop_active(link, CloseCode.EVICTED, "outside the area of interest", now)
