"""Every use of aioquic's private attributes, in one place (aioquic pinned at 1.7.2).

aioquic's sans-I/O :class:`~aioquic.quic.connection.QuicConnection` has no public
way to bound its DATAGRAM queue, to learn the peer's advertised
``max_datagram_frame_size``, to read the peer's TLS certificate, to tell whether
its timer may be read yet, or to tune how eagerly it acknowledges. The mesh
needs each of these, and to report a connection's quality (round-trip time,
packets sent and lost, which aioquic keeps but does not publish), and so reads
or writes eleven private attributes, in nine functions:

========================================  =============================================
function                                  private attributes
========================================  =============================================
:func:`trim_pending_datagrams`,           ``_datagrams_pending``
:func:`pending_datagram_count`
:func:`remote_max_datagram_frame_size`    ``_remote_max_datagram_frame_size``
:func:`timer_ready`                       ``_close_at``
:func:`peer_certificate_ed25519`          ``tls._peer_certificate``
:func:`tune_ack_delay`                    ``_ack_delay``, ``_loss.max_ack_delay``
:func:`piggyback_ack`                     ``_spaces[ONE_RTT].ack_at``
:func:`rtt_stats`                         ``_loss._rtt_*``
:func:`packets_sent`                      ``_packet_number``
:func:`count_lost_packets`                ``_loss._on_packets_lost``
========================================  =============================================

:class:`MeshQuicConnection` touches none of them; it relies on aioquic's state
changing only through the public calls it overrides. ``tests/mesh/test_quicshim.py``
pins each behaviour, so an aioquic upgrade fails loudly in one file instead of
silently anywhere, and :func:`check_aioquic_version` refuses any other version.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import version as _dist_version
from typing import Any

from aioquic import tls
from aioquic.quic.connection import QuicConnection
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol.errors import MeshConfigError

__all__ = [
    "PINNED_AIOQUIC_VERSION",
    "MeshQuicConnection",
    "LossCounter",
    "RttStats",
    "check_aioquic_version",
    "count_lost_packets",
    "packets_sent",
    "pending_datagram_count",
    "peer_certificate_ed25519",
    "piggyback_ack",
    "remote_max_datagram_frame_size",
    "rtt_stats",
    "timer_ready",
    "trim_pending_datagrams",
    "tune_ack_delay",
]

PINNED_AIOQUIC_VERSION = "1.7.2"


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
      is cached until the next call that changes the state;
    * ``datagrams_to_send`` returns ``[]`` at once when no such call happened
      since the last one and ``now`` is before :meth:`get_timer`: what a timer
      releases (an ACK due, pacing) only becomes due at that time, and anything
      else (data, a close, a received packet, a loss timeout) comes through one
      of the overridden calls below. Output is the same as aioquic's, packet
      for packet.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._mesh_clean = False
        self._mesh_timer: float | None = None
        self._mesh_timer_valid = False
        self._mesh_watch: list[tuple[set[Any], Any]] = []
        super().__init__(*args, **kwargs)

    def watch(self, touched: set[Any], token: Any) -> None:
        """Add ``token`` to ``touched`` now and whenever a call may change what this
        connection sends or its timer: a driver then flushes (or re-reads the timer
        of) only the connections in that set. Handling a due timer touches too.
        Several sets may watch one connection."""
        self._mesh_watch.append((touched, token))
        touched.add(token)

    def _mesh_touch(self) -> None:
        self._mesh_clean = False
        self._mesh_timer_valid = False
        for touched, token in self._mesh_watch:
            touched.add(token)

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        if self._mesh_clean:
            timer = self.get_timer()
            if timer is None or now < timer:
                return []
        out = super().datagrams_to_send(now)
        self._mesh_clean = True
        self._mesh_timer_valid = False
        return out

    def get_timer(self) -> float | None:
        if not self._mesh_timer_valid:
            self._mesh_timer = super().get_timer()
            self._mesh_timer_valid = True
        return self._mesh_timer

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

    def receive_datagram(self, *args: Any, **kwargs: Any) -> None:
        self._mesh_touch()
        super().receive_datagram(*args, **kwargs)

    def request_key_update(self, *args: Any, **kwargs: Any) -> None:
        self._mesh_touch()
        super().request_key_update(*args, **kwargs)

    def reset_stream(self, *args: Any, **kwargs: Any) -> None:
        self._mesh_touch()
        super().reset_stream(*args, **kwargs)

    def send_datagram_frame(self, *args: Any, **kwargs: Any) -> None:
        self._mesh_touch()
        super().send_datagram_frame(*args, **kwargs)

    def send_ping(self, *args: Any, **kwargs: Any) -> None:
        self._mesh_touch()
        super().send_ping(*args, **kwargs)

    def send_stream_data(self, *args: Any, **kwargs: Any) -> None:
        self._mesh_touch()
        super().send_stream_data(*args, **kwargs)

    def stop_stream(self, *args: Any, **kwargs: Any) -> None:
        self._mesh_touch()
        super().stop_stream(*args, **kwargs)


def _touch(conn: QuicConnection) -> None:
    # the private edits below change what the connection sends or when
    if isinstance(conn, MeshQuicConnection):
        conn._mesh_touch()


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
    pending = _pending(conn)
    dropped = 0
    while len(pending) > max(keep, 0):
        pending.popleft()
        dropped += 1
    if dropped:
        _touch(conn)
    return dropped


def remote_max_datagram_frame_size(conn: QuicConnection) -> int | None:
    """The peer's advertised ``max_datagram_frame_size`` (None: it did not enable DATAGRAM)."""
    size: int | None = conn._remote_max_datagram_frame_size
    return size


def timer_ready(conn: QuicConnection) -> bool:
    """True when ``handle_timer``/``get_timer`` may be called (aioquic raises before connect)."""
    return conn._close_at is not None


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


def piggyback_ack(conn: QuicConnection, now: float) -> bool:
    """Make a pending application-space ACK due now, so it rides on the next packet.

    Returns True when an ACK was pending. Call it just before flushing a packet
    that carries data anyway.
    """
    space = conn._spaces.get(tls.Epoch.ONE_RTT)
    if space is None or space.ack_at is None:
        return False
    if space.ack_at > now:
        space.ack_at = now
        _touch(conn)
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
