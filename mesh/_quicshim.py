"""Every use of aioquic's private attributes, in one place (aioquic pinned at 1.7.2).

aioquic's sans-I/O :class:`~aioquic.quic.connection.QuicConnection` has no public
way to bound its DATAGRAM queue, to learn the peer's advertised
``max_datagram_frame_size``, to read the peer's TLS certificate, to tell whether
its timer may be read yet, or to tune how eagerly it acknowledges. The mesh
needs each of these, and to report a connection's quality (round-trip time,
packets sent and lost, which aioquic keeps but does not publish), and to read
its timer cheaply, and so reads or writes private attributes, in these functions:

========================================  =============================================
function                                  private attributes
========================================  =============================================
:func:`trim_pending_datagrams`,           ``_datagrams_pending``
:func:`pending_datagram_count`
:func:`remote_max_datagram_frame_size`    ``_remote_max_datagram_frame_size``
:func:`peer_certificate_ed25519`          ``tls._peer_certificate``
:func:`tune_ack_delay`                    ``_ack_delay``, ``_loss.max_ack_delay``
:func:`piggyback_ack`,                    ``_spaces[ONE_RTT].ack_at``,
``MeshQuicConnection.send_movement``      ``_datagrams_pending``
:func:`rtt_stats`                         ``_loss._rtt_*``
:func:`packets_sent`                      ``_packet_number``
:func:`count_lost_packets`                ``_loss._on_packets_lost``
:func:`has_nothing_to_send`               every pending-frame flag ``_write_application``
                                          reads (``_close_pending``, ``_ping_pending``,
                                          ``_datagrams_pending``, stream and limit
                                          state, ...), see its docstring
``datagrams_to_send`` (DATAGRAMs only)    the same flags; in
and :class:`mesh._quic_tx.                ``DatagramPacketWriter``, what aioquic's
DatagramPacketWriter`                     builder, ACK/PING/DATAGRAM frame writers and
                                          ``_flush_builder`` read and write:
                                          ``_packet_number``, ``_peer_cid``,
                                          ``_spin_bit``, ``_cryptos[ONE_RTT]``
                                          (``_update_key_requested``, ``recv``),
                                          ``_max_datagram_size``, the 1-RTT space's
                                          ``ack_at``, ``ack_queue`` (its range list,
                                          ``_RangeSet__ranges``), ``sent_packets``,
                                          ``ack_eliciting_in_flight``,
                                          ``largest_received_*``,
                                          ``_local_ack_delay_exponent``, ``_loss``
                                          (``_cc``: window, bytes in flight,
                                          ``on_packet_sent``; ``handshake_confirmed``,
                                          ``_time_of_last_sent_ack_eliciting_packet``;
                                          ``_pacer``: ``packet_time``, ``bucket_*``,
                                          ``evaluation_time``),
                                          ``_pacing_at``, ``_close_at``,
                                          ``_idle_timeout()``,
                                          ``_ack_eliciting_sent_since_receipt``,
                                          ``_on_ack_delivery``, ``_on_ping_delivery``,
                                          ``_network_paths[0].bytes_sent``,
                                          ``_quic_logger``
``mesh._quic_crypto`` (packet protection  ``CryptoPair._update_key_requested``, and
of a short header in one call)            of a ``CryptoContext``: ``aead._aead``,
                                          ``aead._iv``, ``hp._encryptor``,
                                          ``hp._is_chacha20``
``MeshQuicConnection.datagrams_to_send``  ``_state``, ``_pacing_at`` (written),
(the idle check: aioquic's pacing step)   ``_loss._pacer`` (``packet_time``,
                                          ``bucket_max``; ``bucket_time`` and
                                          ``evaluation_time`` written)
``MeshQuicConnection.get_timer`` and      ``_close_at``, ``_state``, ``_network_paths``,
``_idle_timeout`` (aioquic's timer and     ``_pacing_at``, ``_loss_at`` (written),
idle timeout computed directly on an      ``_configuration.idle_timeout``,
established connection)                   ``_remote_max_idle_timeout``, ``_loss``
                                          (``spaces``, ``handshake_confirmed``,
                                          ``peer_completed_address_validation``,
                                          ``_rtt_*``, ``max_ack_delay``, ``_pto_count``,
                                          ``_time_of_last_sent_ack_eliciting_packet``),
                                          each space's ``discarded``, the application
                                          space's ``ack_at``, ``loss_time``,
                                          ``ack_eliciting_in_flight``
``_watch_received_frames``, ``_settled``  ``_QuicConnection__frame_handlers`` (wrapped),
(a quiet connection stays quiet across    ``_loss._on_packets_lost`` (wrapped),
a received DATAGRAM/ACK packet)           ``_spaces[ONE_RTT].sent_packets`` handlers
``_quic_rx.ShortPacketReceiver``          what aioquic's ``receive_datagram`` reads and
(a received 1-RTT DATAGRAM/ACK/PADDING    changes for such a packet: the table in
packet, without aioquic's generic pass)   :mod:`mesh._quic_rx`
========================================  =============================================

:class:`MeshQuicConnection` reads and writes only those its rows name (its
``send_datagram_frame`` is aioquic's, written out: it queues the payload in
``_datagrams_pending``); otherwise it relies on aioquic's state changing only through
the public calls it overrides. :class:`~mesh.link.Link` reads the connection's cached
timer (``_mesh_timer`` while ``_mesh_timer_valid``) without a call.
``tests/mesh/test_quicshim.py`` pins each behaviour, so an aioquic upgrade fails loudly
in one file instead of silently anywhere, and :func:`check_aioquic_version` refuses any
other version.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import version as _dist_version
from typing import Any

from aioquic import tls
from aioquic.quic.congestion.base import K_GRANULARITY
from aioquic.quic.connection import END_STATES, QuicConnection, QuicConnectionState
from aioquic.quic.packet import QuicFrameType
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mesh._quic_rx import ShortPacketReceiver
from mesh._quic_tx import DatagramPacketWriter
from protocol.errors import MeshConfigError

__all__ = [
    "ACK_ONLY_LIMIT",
    "ACK_ONLY_PING_UID",
    "PINNED_AIOQUIC_VERSION",
    "MeshQuicConnection",
    "LossCounter",
    "RttStats",
    "check_aioquic_version",
    "count_lost_packets",
    "has_nothing_to_send",
    "packets_sent",
    "pending_datagram_count",
    "peer_certificate_ed25519",
    "PIGGYBACK_EVERY",
    "piggyback_ack",
    "probe_path",
    "remote_max_datagram_frame_size",
    "rtt_stats",
    "trim_pending_datagrams",
    "tune_ack_delay",
]

PINNED_AIOQUIC_VERSION = "1.7.2"

_CONNECTED = QuicConnectionState.CONNECTED

#: Unacknowledged ACK-only packets a connection keeps before its next ACK carries a PING.
#: ACK-only packets are not ack-eliciting (RFC 9000 section 13.2.1), so a peer that only
#: receives (a player standing still among moving ones: it acknowledges their movement and
#: sends nothing else) never has its ACKs acknowledged, and aioquic keeps every one of them
#: among its sent packets for good: memory, and the work of every pass over them, that grow
#: by one per ACK. A PING makes every 16th ack-eliciting (section 13.2.4's remedy): the
#: peer's ACK of it acknowledges the ones before too, and they are forgotten.
ACK_ONLY_LIMIT = 16
#: The user id of that PING (aioquic reports its acknowledgement as ``PingAcknowledged``;
#: the mesh reads no such event).
ACK_ONLY_PING_UID = 0


def check_aioquic_version(installed: str | None = None) -> None:
    """Raise :class:`~protocol.errors.MeshConfigError` unless aioquic is the pinned version.

    ``installed``: the version to check (default: the installed distribution's).
    """
    if installed is None:
        installed = _dist_version("aioquic")
    if installed != PINNED_AIOQUIC_VERSION:
        raise MeshConfigError(
            f"mesh needs aioquic=={PINNED_AIOQUIC_VERSION} (private attributes are used "
            f"behind mesh/_quicshim.py), found {installed}"
        )


class MeshQuicConnection(QuicConnection):
    """A ``QuicConnection`` that skips the work of an idle connection.

    A node flushes every connection after each datagram it receives; with 15
    peers, aioquic's ``datagrams_to_send`` (a packet builder and a pass over
    every frame type each time) and ``get_timer`` on the 14 idle connections
    cost far more than the one that had something to do. This subclass
    remembers whether anything happened since its last ``datagrams_to_send``:

    * ``get_timer`` is a function of the connection's state only (its one side
      effect, the loss-detection time, is a function of it too), so its result
      is cached until the next call that changes the state; on an established
      connection it is computed directly, without aioquic's chain of calls over
      every packet space (same value: see :meth:`get_timer`), and so is the idle
      timeout every received packet restarts;
    * ``datagrams_to_send`` returns ``[]`` at once when no such call happened
      since the last one, ``now`` is before :meth:`get_timer` and the pacer holds
      nothing back: a delayed ACK only becomes due at its time, and anything else
      (data, a close, a loss timeout) comes through one of the overridden calls
      below. Pacing is the exception: aioquic's pacer refills continuously and lets
      a packet go as soon as it has any credit, so its pacing time (in the timer) is
      the latest a held packet leaves, not the earliest; the check therefore does the
      pacer's own step (credit accrues up to ``now``, the pacing time is set anew, as
      each aioquic flush does first) and flushes when pacing held something back
      that it now releases. Output and state are the same as aioquic's, packet for
      packet, whenever and however often the connection is flushed.
    * a flush with only DATAGRAM frames (and an ACK) to send writes their packet
      directly, with aioquic's bookkeeping but without its packet builder and its
      pass over every other frame source (:mod:`mesh._quic_tx`): the movement path.
    * a received 1-RTT packet of DATAGRAM, ACK and PADDING frames on the active path is
      handled by :class:`~mesh._quic_rx.ShortPacketReceiver` (aioquic's result without its
      generic pass); any other datagram goes to aioquic untouched;
    * a received packet of DATAGRAM, ACK and PADDING frames leaves a quiet connection
      (only DATAGRAMs may be pending) quiet without re-checking every frame source,
      when it changed nothing that check reads (see :meth:`receive_datagram`);
    * a received datagram leaves a clean connection clean when
      :func:`has_nothing_to_send` says so afterwards: most received packets of
      an established link (movement DATAGRAMs, ACKs) only schedule a delayed
      ACK, and the flush after them used to build and discard an empty packet
      (about a sixth of a busy node's CPU); such a datagram tells only the
      watchers of the timer (:meth:`watch`), so the driver skips that flush.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._mesh_clean = False
        self._mesh_timer: float | None = None
        self._mesh_timer_valid = False
        # the loss recovery's space list once only its application space is live, and that
        # space: get_timer's direct computation (see there) holds from then on
        self._mesh_timer_spaces: list[Any] | None = None
        self._mesh_timer_space: Any = None
        self._mesh_watch: list[tuple[set[Any], Any]] = []
        self._mesh_timer_watch: list[tuple[set[Any], Any]] = []  # watch(timer=True)'s
        self._mesh_one_rtt: tuple[Any, Any] | None = None  # see _one_rtt
        # its application space, once _one_rtt found it (always so while _mesh_quiet)
        self._mesh_app_space: Any = None
        # _quiet_but_datagrams held and no call since could change it (see _mesh_touch)
        self._mesh_quiet = False
        # while quiet: every sent packet not yet acknowledged or lost carries only frames
        # whose acknowledgement changes nothing _quiet_but_datagrams reads (see _settled)
        self._mesh_settled = False
        # a frame but DATAGRAM, ACK and PADDING arrived since the last pending ACK went out
        # or was made due: that ACK rides on the next packet (see piggyback_ack)
        self._mesh_ack_prompt = False
        # the largest packet number the last ACK made due by piggyback_ack acknowledged
        self._mesh_ack_largest = -1
        self._mesh_rx = ShortPacketReceiver(self)  # reads nothing before the first datagram
        self._mesh_tx: DatagramPacketWriter | None = None  # made on the first movement packet
        super().__init__(*args, **kwargs)
        self.events: deque[Any] = self._events
        """aioquic's event queue itself (made once, never replaced): what :meth:`next_event`
        pops, for a driver to drain without a call per event."""
        _watch_received_frames(self)

    def watch(self, touched: set[Any], token: Any, *, timer: bool = False) -> None:
        """Add ``token`` to ``touched`` now and whenever a call may change what this
        connection sends or its timer: a driver then flushes (or re-reads the timer
        of) only the connections in that set. Handling a due timer touches too.
        Several sets may watch one connection.

        ``timer``: the set is for re-reading the timer only. It alone is told of a
        received datagram that left a clean connection with nothing to send (a movement
        DATAGRAM, an ACK: its delayed ACK, if any, is due later, at the timer): a flush
        then would return nothing, so a set for flushing is not."""
        self._mesh_watch.append((touched, token))
        if timer:
            self._mesh_timer_watch.append((touched, token))
        touched.add(token)

    def _mesh_touch(self, *, datagrams_only: bool = False) -> None:
        """Something changed: flush and re-read the timer. ``datagrams_only``: only the
        DATAGRAM queue or the ACK's time did (the connection stays quiet otherwise).
        Written out in :meth:`receive_datagram` and :meth:`send_datagram_frame` (once per
        movement update each): a change here goes there too."""
        if not datagrams_only:
            self._mesh_quiet = False
        self._mesh_clean = False
        self._mesh_timer_valid = False
        for touched, token in self._mesh_watch:
            touched.add(token)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        if self._mesh_clean:
            timer = self._mesh_timer if self._mesh_timer_valid else self.get_timer()
            if timer is None or now < timer:
                state = self._state
                if state is _CONNECTED:
                    # aioquic's flush asks its pacer first (no ACK is due before the
                    # timer): credit accrues up to now, and pacing holds packets back
                    # only while it has none, so its pacing time (in the timer) is the
                    # latest a held packet leaves, not the earliest
                    pacer = self._loss._pacer
                    packet_time = pacer.packet_time
                    if packet_time is None:
                        return []
                    if now > pacer.evaluation_time:
                        bucket = pacer.bucket_time + (now - pacer.evaluation_time)
                        bucket_max = pacer.bucket_max
                        pacer.bucket_time = bucket if bucket < bucket_max else bucket_max
                        pacer.evaluation_time = now
                    if pacer.bucket_time <= 0:
                        pacing_at = now + packet_time
                        if pacing_at != self._pacing_at:
                            self._pacing_at = pacing_at
                            self._mesh_timer_valid = False
                        return []
                    if self._pacing_at is None:
                        return []
                    # pacing released what it held back, if anything: flush
                elif state in END_STATES:
                    return []
                # else the handshake: aioquic flushes (whether it paces depends on its keys)
        space = self._mesh_timer_space
        if space is not None:
            ack_at = space.ack_at
            if (
                ack_at is not None
                and ack_at <= now
                and not self._datagrams_pending
                and not self._ping_pending
                and len(space.sent_packets) - space.ack_eliciting_in_flight >= ACK_ONLY_LIMIT
            ):
                # a packet of this ACK alone would be one more that nobody acknowledges
                self.send_ping(ACK_ONLY_PING_UID)
        # only DATAGRAMs and an ACK pending: the packet written directly (mesh._quic_tx),
        # aioquic's bookkeeping without its builder and its pass over the ~15 other frame
        # sources _write_application makes for each packet (and a second, empty packet it
        # starts to find out it is done); None: not that case, aioquic builds
        space = self._mesh_app_space if self._mesh_quiet else _quiet_but_datagrams(self)
        out = None
        if space is not None:
            writer = self._mesh_tx
            if writer is None:
                writer = self._mesh_tx = DatagramPacketWriter(self, space)
            out = writer.write(now)
        if out is None:
            self._mesh_quiet = False
            out = super().datagrams_to_send(now)
        self._mesh_clean = True
        self._mesh_timer_valid = False
        return out

    def get_timer(self) -> float | None:
        """aioquic's ``get_timer()``, the same value and the same side effect (the loss
        detection time it stores for ``handle_timer``), cached until a call that may change
        it; None before ``connect`` (aioquic raises).

        On an established connection (``CONNECTED``, handshake confirmed, the Initial and
        Handshake spaces discarded, an RTT measured, a validated active path) only the
        application space is live and no path is being validated: the timer is the soonest
        of the idle (or closing) deadline, the delayed ACK, the loss detection time and the
        pacing time, computed here from the state aioquic's own chain reads (its loss recovery's
        ``get_loss_detection_time`` and ``get_probe_timeout``) in the same float
        operations, rather than through that chain (a sum over every space, its
        amplification and path-validation checks). Anything else takes aioquic's.
        ``tests/mesh/test_quic_timer.py`` compares both after every step of a lossy script.
        """
        if self._mesh_timer_valid:
            return self._mesh_timer
        timer_at: float | None = self._close_at
        if timer_at is None:
            return None
        loss = self._loss
        paths = self._network_paths
        if (
            loss.spaces is not self._mesh_timer_spaces
            or self._state is not _CONNECTED
            or not paths
            or not paths[0].is_validated
        ):
            timer_at = super().get_timer()
            if self._mesh_timer_spaces is None:
                self._mesh_timer_space = _steady_timer_space(self)
                if self._mesh_timer_space is not None:
                    self._mesh_timer_spaces = loss.spaces
        else:
            space = self._mesh_timer_space
            ack_at = space.ack_at
            if ack_at is not None and ack_at < timer_at:
                timer_at = ack_at
            # get_loss_detection_time: the space's loss time, else while anything
            # ack-eliciting is in flight the PTO (get_probe_timeout with max_ack_delay, the
            # handshake being confirmed) with its backoff (the peer validated our address
            # and an RTT was measured: see _steady_timer_space)
            loss_at = space.loss_time
            if loss_at is None and space.ack_eliciting_in_flight:
                variance = 4 * loss._rtt_variance
                pto = (
                    loss._rtt_smoothed
                    + (K_GRANULARITY if K_GRANULARITY > variance else variance)
                    + loss.max_ack_delay
                )
                loss_at = loss._time_of_last_sent_ack_eliciting_packet + pto * (2**loss._pto_count)
            self._loss_at = loss_at
            if loss_at is not None and loss_at < timer_at:
                timer_at = loss_at
            pacing_at = self._pacing_at
            if pacing_at is not None and pacing_at < timer_at:
                timer_at = pacing_at
        self._mesh_timer = timer_at
        self._mesh_timer_valid = True
        return timer_at

    def _idle_timeout(self) -> float:
        # aioquic's (RFC 9000 section 10.1: the smaller of both sides' idle timeouts, but
        # at least three PTOs), with its min, max and get_probe_timeout inlined: every
        # received packet and the first ack-eliciting one sent after it restart the timer
        loss = self._loss
        if not loss._rtt_initialized:
            return super()._idle_timeout()  # the handshake's: PTOs of the initial RTT
        idle: float = self._configuration.idle_timeout
        remote = self._remote_max_idle_timeout
        if remote is not None and remote < idle:
            idle = remote
        variance = 4 * loss._rtt_variance
        pto = (
            loss._rtt_smoothed
            + (K_GRANULARITY if K_GRANULARITY > variance else variance)
            + loss.max_ack_delay
        )
        probes = 3 * pto
        return probes if probes > idle else idle

    def next_event(self) -> Any:
        # aioquic pops and catches IndexError: the core asks after every datagram and every
        # flush, and the queue is empty nearly every time
        queue = self._events
        return queue.popleft() if queue else None

    # every public call that changes what the connection has to send

    def change_connection_id(self, *args: Any, **kwargs: Any) -> None:
        self._mesh_touch()
        super().change_connection_id(*args, **kwargs)

    def close(self, *args: Any, **kwargs: Any) -> None:
        self._mesh_touch()
        super().close(*args, **kwargs)

    def connect(self, *args: Any, **kwargs: Any) -> None:
        self._mesh_touch()
        super().connect(*args, **kwargs)

    def handle_timer(self, *args: Any, **kwargs: Any) -> None:
        self._mesh_touch()
        super().handle_timer(*args, **kwargs)

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
        """As aioquic's; a quiet connection stays quiet (no full check on the next flush)
        when the datagram brought only PADDING, DATAGRAM and 1-RTT ACK frames, the ACKs
        acknowledged only settled packets and declared none lost, and the state, path
        and connection ID stayed as they were. Anything else (another frame type, a
        loss, a close, a migration) clears it (:func:`_watch_received_frames`)."""
        was_clean = self._mesh_clean
        keep = self._mesh_quiet and self._mesh_settled
        # the timer changes (ACK due, loss detection, idle); quiet only if kept:
        # _mesh_touch(datagrams_only=keep), inlined (once per received datagram); the
        # watchers of a clean connection are told at the end, when it is known whether
        # it still has nothing to send (see watch)
        if not keep:
            self._mesh_quiet = False
        self._mesh_clean = False
        self._mesh_timer_valid = False
        if not was_clean:
            for touched, token in self._mesh_watch:
                touched.add(token)
        if keep:
            paths = self._network_paths
            path, host_cid = paths[0], self.host_cid
        try:
            if not self._mesh_rx.receive(data, addr, now):
                super().receive_datagram(data, addr, now)
        except BaseException:
            for touched, token in self._mesh_watch:  # whatever it left: flush and see
                touched.add(token)
            raise
        if keep and self._mesh_quiet:
            paths = self._network_paths
            if (
                self._state is not QuicConnectionState.CONNECTED
                or self._close_pending
                or len(paths) != 1
                or paths[0] is not path
                or self.host_cid != host_cid
            ):
                self._mesh_quiet = False
        if was_clean:
            if self._mesh_quiet:  # has_nothing_to_send's answer for a quiet connection
                ack_at = self._mesh_app_space.ack_at
                self._mesh_clean = not self._datagrams_pending and (ack_at is None or ack_at > now)
            else:
                self._mesh_clean = has_nothing_to_send(self, now)
            # still nothing to send (a delayed ACK waits for its time, in the timer): only
            # the timer's watchers re-read it, a flush would find nothing (see watch)
            for touched, token in (
                self._mesh_watch if not self._mesh_clean else self._mesh_timer_watch
            ):
                touched.add(token)

    def request_key_update(self, *args: Any, **kwargs: Any) -> None:
        self._mesh_touch()
        super().request_key_update(*args, **kwargs)

    def reset_stream(self, *args: Any, **kwargs: Any) -> None:
        self._mesh_touch()
        super().reset_stream(*args, **kwargs)

    def send_datagram_frame(self, data: bytes) -> None:
        # once per movement update: _mesh_touch(datagrams_only=True) and aioquic's whole
        # send_datagram_frame (it queues the payload), inlined
        self._mesh_clean = False
        self._mesh_timer_valid = False
        for touched, token in self._mesh_watch:
            touched.add(token)
        self._datagrams_pending.append(data)

    def send_movement(
        self,
        payloads: Iterable[bytes],
        keep: int,
        now: float,
        min_age: float | None = None,
        next_send: float | None = None,
    ) -> bool:
        """One movement send in one call: :meth:`send_datagram_frame` of each of
        ``payloads``, then :func:`trim_pending_datagrams` to ``keep``, then (``min_age``
        not None) :func:`piggyback_ack` with ``now``, ``min_age`` and ``next_send``. Same
        state as those calls one after the other (they are written out here: a change
        there goes here too). Returns True when the next packet carries an ACK
        (:func:`piggyback_ack`'s answer; False when ``min_age`` is None)."""
        pending = self._datagrams_pending
        touch = False
        for payload in payloads:
            pending.append(payload)
            touch = True
        if len(pending) > keep:  # a stalled receiver: the oldest go
            floor = keep if keep > 0 else 0
            while len(pending) > floor:
                pending.popleft()
                touch = True
        rides = False
        if min_age is not None:
            space = self._mesh_app_space
            if space is None:  # not established yet: see piggyback_ack
                try:
                    space = _one_rtt(self)[0]
                except KeyError:
                    space = None
            if space is not None:
                ack_at = space.ack_at
                prompt = self._mesh_ack_prompt
                self._mesh_ack_prompt = False
                if ack_at is not None:
                    largest = space.largest_received_packet
                    rides = True
                    if ack_at > now:
                        if (
                            not prompt
                            and now - (ack_at - self._ack_delay) < min_age
                            and (next_send is None or ack_at > next_send)
                            and largest - self._mesh_ack_largest < PIGGYBACK_EVERY
                        ):
                            rides = False
                        else:
                            space.ack_at = now
                            touch = True
                    if rides:
                        self._mesh_ack_largest = largest
        if touch:  # _mesh_touch(datagrams_only=True), inlined
            self._mesh_clean = False
            self._mesh_timer_valid = False
            for touched, token in self._mesh_watch:
                touched.add(token)
        return rides

    def send_ping(self, *args: Any, **kwargs: Any) -> None:
        self._mesh_touch()
        super().send_ping(*args, **kwargs)

    def send_stream_data(self, *args: Any, **kwargs: Any) -> None:
        self._mesh_touch()
        super().send_stream_data(*args, **kwargs)

    def stop_stream(self, *args: Any, **kwargs: Any) -> None:
        self._mesh_touch()
        super().stop_stream(*args, **kwargs)


def _steady_timer_space(conn: QuicConnection) -> Any:
    """The application space when it is the only live space of ``conn``'s loss recovery
    (every other space discarded: nothing sets a discarded space's ACK time, loss time or
    packets in flight again), the handshake is confirmed, the peer has validated our
    address and an RTT was measured; else None. Once so, so for good (none of these is
    ever undone)."""
    loss = conn._loss
    if not (
        loss.handshake_confirmed
        and loss.peer_completed_address_validation
        and loss._rtt_initialized
    ):
        return None
    live = [space for space in loss.spaces if not space.discarded]
    if len(live) != 1 or not live[0].is_application_data:
        return None
    return live[0]


def probe_path(conn: QuicConnection) -> None:
    """Send one PING on the next flush even when the congestion window is full.

    A path gone silent keeps its unacknowledged packets in flight, so its window
    stays full and only aioquic's own PTO probes leave, each twice as late as the
    one before: a path that comes back would be noticed tens of seconds later.
    This is that PTO probe (``_send_probe``: one packet past the window), asked
    for by the core's path probe (at most one per ``path_probe_interval``), as
    ICE's consent checks keep probing a path.
    """
    conn._send_probe()
    _touch(conn)


def has_nothing_to_send(conn: QuicConnection, now: float) -> bool:
    """True when aioquic's ``datagrams_to_send(now)`` would surely return nothing.

    Checks, on an established connection (``CONNECTED``, handshake confirmed,
    one validated path, no preferred address to probe), every source of a frame
    ``_write_application`` reads: a close, an ACK due by ``now``, HANDSHAKE_DONE,
    PATH_CHALLENGE/RESPONSE, NEW/RETIRE_CONNECTION_ID, STREAMS_BLOCKED, MAX_DATA,
    MAX_STREAMS and MAX_STREAM_DATA updates (and what a lost one re-queues), PINGs
    (user and probe), CRYPTO, DATAGRAM and STREAM data, STOP_SENDING, RESET_STREAM,
    finished streams to discard. Anything else answers False (flush and see): a
    False is never wrong, only slower. ``tests/mesh/test_quicshim.py`` checks the
    claim against aioquic itself.
    """
    if conn._datagrams_pending:
        return False
    space = _quiet_but_datagrams(conn)
    return space is not None and (space.ack_at is None or space.ack_at > now)


def _quiet_but_datagrams(conn: QuicConnection) -> Any:
    """The application packet space when DATAGRAM frames and an ACK are all the
    connection may have to send (:func:`has_nothing_to_send` lists what is checked);
    None otherwise. A MeshQuicConnection remembers a yes until a call that may change
    the answer (anything but queueing DATAGRAMs or moving the ACK's time)."""
    if isinstance(conn, MeshQuicConnection) and conn._mesh_quiet:
        return conn._mesh_app_space
    if conn._state is not QuicConnectionState.CONNECTED or not conn._handshake_confirmed:
        return None
    if conn._close_pending or conn._handshake_done_pending or conn._probe_pending:
        return None
    if conn._ping_pending or conn._retire_connection_ids:
        return None
    if conn._streams_blocked_pending or conn._remote_preferred_address is not None:
        return None
    space, crypto = _one_rtt(conn)
    paths = conn._network_paths
    if len(paths) != 1 or not paths[0].is_validated or paths[0].remote_challenges:
        return None
    if any(not cid.was_sent for cid in conn._host_cids):
        return None
    if not crypto.sender.buffer_is_empty:
        return None
    max_data = conn._local_max_data
    if max_data.used * 2 > max_data.value:
        return None
    if max_data.value != max_data.sent:
        return None
    for limit in (conn._local_max_streams_bidi, conn._local_max_streams_uni):
        # aioquic batches MAX_STREAMS: sent only once the peer has fewer streams left
        # to open than the update would grant
        if limit.value != limit.sent and limit.sent - limit.used < limit.value - limit.sent:
            return None
    for stream in (*conn._streams.values(), *conn._streams_queue):
        if stream.is_finished or stream.receiver.stop_pending or stream.sender.reset_pending:
            return None
        if not stream.is_blocked and not stream.sender.buffer_is_empty:
            return None
        local = stream.max_stream_data_local
        if local and stream.receiver.highest_offset * 2 > local:
            return None
        if stream.max_stream_data_local_sent != local:
            return None
    if isinstance(conn, MeshQuicConnection):
        conn._mesh_quiet = True
        conn._mesh_settled = _settled(conn, space)
    return space


#: Frame types a received packet may carry and leave a quiet connection quiet: PADDING
#: and DATAGRAM change nothing _quiet_but_datagrams reads, a 1-RTT ACK neither when
#: it acknowledges settled packets only and declares no loss (both checked).
_QUIET_FRAME_TYPES = frozenset(
    (QuicFrameType.PADDING, QuicFrameType.DATAGRAM, QuicFrameType.DATAGRAM_WITH_LENGTH)
)
_ACK_FRAME_TYPES = frozenset((QuicFrameType.ACK, QuicFrameType.ACK_ECN))


def _watch_received_frames(conn: MeshQuicConnection) -> None:
    """Make every received frame but PADDING, DATAGRAM and a 1-RTT ACK, and every
    packet declared lost, clear ``conn._mesh_quiet`` (such a frame also sets
    ``conn._mesh_ack_prompt``): wraps the handlers in aioquic's frame table
    (``__frame_handlers``) and the loss recovery's ``_on_packets_lost``."""
    table: dict[int, tuple[Any, Any]] = conn._QuicConnection__frame_handlers  # type: ignore[attr-defined]

    def unquiet(handler: Any) -> Any:
        def handle(context: Any, frame_type: int, buf: Any) -> None:
            conn._mesh_quiet = False
            conn._mesh_ack_prompt = True
            handler(context, frame_type, buf)

        return handle

    def ack_in_one_rtt(handler: Any) -> Any:
        def handle(context: Any, frame_type: int, buf: Any) -> None:
            if context.epoch is not tls.Epoch.ONE_RTT:
                conn._mesh_quiet = False
            handler(context, frame_type, buf)

        return handle

    for frame_type, (handler, epochs) in list(table.items()):
        if frame_type in _ACK_FRAME_TYPES:
            table[frame_type] = (ack_in_one_rtt(handler), epochs)
        elif frame_type not in _QUIET_FRAME_TYPES:
            table[frame_type] = (unquiet(handler), epochs)

    recovery = conn._loss
    original = recovery._on_packets_lost

    def on_packets_lost(**kwargs: Any) -> None:
        # called after every ACK, most often with no packet (an iterable: maybe some)
        packets = kwargs["packets"]
        if not isinstance(packets, list) or packets:
            conn._mesh_quiet = False
        original(**kwargs)

    recovery._on_packets_lost = on_packets_lost  # type: ignore[method-assign]


def _settled(conn: QuicConnection, space: Any) -> bool:
    """True when every application packet in flight carries only frames whose
    acknowledgement changes nothing :func:`_quiet_but_datagrams` reads: DATAGRAMs (no
    delivery handler), ACKs (``_on_ack_delivery`` trims the ACK queue) and a PING with
    no user id (the ACK-of-ACK trigger). The packet writer, the only sender while a
    connection is quiet, sends nothing else, so a quiet connection stays settled."""
    ack_delivery = conn._on_ack_delivery
    ping_delivery = conn._on_ping_delivery
    for packet in space.sent_packets.values():
        for handler, args in packet.delivery_handlers:
            if handler == ack_delivery:
                continue
            if handler == ping_delivery and args == ((),):
                continue
            return False
    return True


def _one_rtt(conn: QuicConnection) -> tuple[Any, Any]:
    """The application packet space and CRYPTO stream of a confirmed connection.

    Both are made once, before the handshake completes, and never replaced; a
    MeshQuicConnection keeps them (looking an ``Epoch`` up in a dict costs a
    Python-level ``Enum.__hash__``, twice per received datagram otherwise).
    """
    if isinstance(conn, MeshQuicConnection):
        cached = conn._mesh_one_rtt
        if cached is None:
            cached = conn._mesh_one_rtt = (
                conn._spaces[tls.Epoch.ONE_RTT],
                conn._crypto_streams[tls.Epoch.ONE_RTT],
            )
            conn._mesh_app_space = cached[0]
        return cached
    return conn._spaces[tls.Epoch.ONE_RTT], conn._crypto_streams[tls.Epoch.ONE_RTT]


def _touch(conn: QuicConnection, *, datagrams_only: bool = False) -> None:
    # the private edits below change what the connection sends or when
    if isinstance(conn, MeshQuicConnection):
        conn._mesh_touch(datagrams_only=datagrams_only)


def _pending(conn: QuicConnection) -> deque[bytes]:
    pending: deque[bytes] = conn._datagrams_pending
    return pending


def pending_datagram_count(conn: QuicConnection) -> int:
    """DATAGRAM payloads queued in aioquic and not yet written into a packet."""
    return len(_pending(conn))


def trim_pending_datagrams(conn: QuicConnection, keep: int) -> int:
    """Drop the oldest queued DATAGRAM payloads until at most ``keep`` remain.

    aioquic's queue is unbounded; a stalled receiver would otherwise make it grow
    and later deliver second-old movement. Returns how many were dropped.
    """
    pending: deque[bytes] = conn._datagrams_pending
    if len(pending) <= keep:
        return 0  # called after every movement send: nearly always so
    dropped = 0
    while len(pending) > max(keep, 0):
        pending.popleft()
        dropped += 1
    if dropped:
        _touch(conn, datagrams_only=True)
    return dropped


def remote_max_datagram_frame_size(conn: QuicConnection) -> int | None:
    """The peer's advertised ``max_datagram_frame_size`` (None: it did not enable DATAGRAM)."""
    size: int | None = conn._remote_max_datagram_frame_size
    return size


def peer_certificate_ed25519(conn: QuicConnection) -> bytes | None:
    """Raw Ed25519 public key of the peer's TLS certificate, if it presented an Ed25519 one.

    Only a client sees a certificate (the server's): it lets the dialler check that
    the TLS endpoint holds the very identity key its ticket names.
    """
    cert = conn.tls._peer_certificate
    if cert is None:
        return None
    key = cert.public_key()
    if not isinstance(key, Ed25519PublicKey):
        return None
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def tune_ack_delay(conn: QuicConnection, ack_delay: float) -> None:
    """Acknowledge after ``ack_delay`` seconds instead of aioquic's 1 ms.

    By default every DATAGRAM gets its own ACK-only packet; delaying the ACK (the
    node uses :attr:`mesh.config.MeshConfig.ack_delay`, 2.5 movement ticks by
    default) lets it ride on a later movement datagram. The loss
    detector's ``max_ack_delay`` (our view of the peer, normally taken from its
    transport parameters) is raised to match, since the peer runs the same
    tuning. Call it after the handshake completed (transport parameters would
    overwrite it otherwise).
    """
    if ack_delay <= 0:
        raise ValueError("ack_delay must be positive")
    conn._ack_delay = ack_delay
    conn._loss.max_ack_delay = max(conn._loss.max_ack_delay, ack_delay)
    _touch(conn)


#: Ack-eliciting packets waiting for an ACK that make it ride on the next packet
#: whatever its age (RFC 9000 section 13.2.2: acknowledge at least every second one).
PIGGYBACK_EVERY = 2


def piggyback_ack(
    conn: QuicConnection, now: float, min_age: float = 0.0, next_send: float | None = None
) -> bool:
    """Make a pending application-space ACK due now, so it rides on the next packet,
    if it has waited at least ``min_age`` seconds, or if its delay runs out before
    ``next_send`` (when the caller expects to send on this connection next: the ACK
    would otherwise go alone, in a packet of its own, before that).

    A pending ACK's age counts from the first ack-eliciting packet it would
    acknowledge (aioquic schedules it ``_ack_delay`` after that packet). A younger
    one keeps its time: it rides on a later packet, or aioquic's delayed-ACK
    timer sends it, never later than without this call. On a
    :class:`MeshQuicConnection`, a younger one rides too when
    :data:`PIGGYBACK_EVERY` packets wait for it (counted by packet number since the
    last ACK this call made due: at worst more, so sooner), or when anything but
    DATAGRAM, ACK and PADDING frames arrived since (stream data, a PING, flow
    control: acknowledged as with ``min_age=0``). Returns True when the next packet
    carries an ACK. Call it just before flushing a packet that carries data anyway.
    """
    mesh = conn if isinstance(conn, MeshQuicConnection) else None
    space = mesh._mesh_app_space if mesh is not None else None
    if space is None:
        try:
            space = _one_rtt(conn)[0]
        except KeyError:  # before the handshake made the application space
            return False
    ack_at = space.ack_at
    prompt = False
    if mesh is not None:
        prompt = mesh._mesh_ack_prompt
        mesh._mesh_ack_prompt = False  # what it was set for goes out now, or went already
    if ack_at is None:
        return False
    largest = space.largest_received_packet
    if ack_at > now:
        if (
            not prompt
            and now - (ack_at - conn._ack_delay) < min_age
            and (next_send is None or ack_at > next_send)
            and (mesh is None or largest - mesh._mesh_ack_largest < PIGGYBACK_EVERY)
        ):
            return False
        space.ack_at = now
        if mesh is not None:  # (_touch: nothing to do on another connection)
            mesh._mesh_touch(datagrams_only=True)
    if mesh is not None:
        mesh._mesh_ack_largest = largest
    return True


@dataclass(frozen=True, slots=True)
class RttStats:
    """Round-trip time estimates of one connection, in seconds (RFC 9002 section 5)."""

    smoothed: float
    """``smoothed_rtt``: the exponentially weighted mean of the samples."""
    minimum: float
    """``min_rtt``: the smallest sample seen."""
    variance: float
    """``rttvar``: the mean deviation of the samples."""
    latest: float
    """``latest_rtt``: the last sample (peer's ack delay removed)."""


def rtt_stats(conn: QuicConnection) -> RttStats | None:
    """The connection's RTT estimates; None before its first RTT sample."""
    loss = conn._loss
    if not loss._rtt_initialized:
        return None
    return RttStats(
        smoothed=loss._rtt_smoothed,
        minimum=loss._rtt_min,
        variance=loss._rtt_variance,
        latest=loss._rtt_latest,
    )


def packets_sent(conn: QuicConnection) -> int:
    """How many QUIC packets the connection has sent (one packet-number sequence for
    every epoch in aioquic: the next packet number)."""
    sent: int = conn._packet_number
    return sent


class LossCounter:
    """Packets aioquic declared lost on one connection (see :func:`count_lost_packets`)."""

    __slots__ = ("lost",)

    def __init__(self) -> None:
        self.lost = 0


def count_lost_packets(conn: QuicConnection) -> LossCounter:
    """Start counting the packets the connection's loss recovery declares lost.

    aioquic keeps no such counter: every declared loss (by packet or time
    threshold, or a probe timeout giving up on what was in flight) goes through
    one private method of the recovery object, which this wraps on this
    connection only. Call it once per connection, before it sends; the counter
    it returns keeps counting for the connection's life.
    """
    recovery = conn._loss
    original = recovery._on_packets_lost
    counter = LossCounter()

    def on_packets_lost(*, packets: Iterable[Any], **kwargs: Any) -> None:
        packets = list(packets)  # aioquic may pass a one-shot iterable
        counter.lost += len(packets)
        original(packets=packets, **kwargs)

    recovery._on_packets_lost = on_packets_lost  # type: ignore[method-assign]
    return counter
