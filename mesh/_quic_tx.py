"""The movement packet, written directly: one 1-RTT packet of an ACK and DATAGRAM frames.

aioquic's ``datagrams_to_send`` builds every packet through its general
``QuicPacketBuilder`` (a builder object, a capacity check and a frame-type lookup per
frame, end-of-packet padding and header logic for four packet types) and then
``_flush_builder`` registers it. For the packets a node sends most, a movement update
on an established link with maybe a delayed ACK, or that ACK alone when its delay ran
out first, nearly all of that is branches that never apply.
:class:`DatagramPacketWriter` writes those packets with the same bytes and the same
bookkeeping, doing only what applies:

* pacing first, as ``_write_application`` does (a due ACK skips it);
* the short header: fixed bit, spin bit, key phase, the peer's connection ID and the
  packet number's two low bytes (aioquic always sends two);
* an ACK frame when one is due (``_write_ack_frame``: its delay, its ranges cut to the
  room left, ``_on_ack_delivery`` as its delivery handler, then a PING when the ACK has
  several ranges and the packet number is a multiple of 8, aioquic's ACK-of-ACK
  trigger), then every queued DATAGRAM as a ``DATAGRAM_WITH_LENGTH`` frame;
* encryption and header protection with the connection's own ``CryptoPair`` keys, in
  one call (:func:`mesh._quic_crypto.seal_short`, aioquic's bytes);
* the bookkeeping of ``_flush_builder``: a ``QuicSentPacket`` (in flight and
  ack-eliciting when it carries a DATAGRAM or the PING), the next packet number, the
  loss recovery's ``on_packet_sent`` (congestion window, PTO), the pacer's
  ``update_after_send`` and the pacing time of the turn that follows, the idle timer
  on the first ack-eliciting packet since one was received, the path's ``bytes_sent``.

Every aioquic function of that list that is only arithmetic on a few fields (the pacer's
``next_send_time``, ``update_bucket`` and ``update_after_send``, ``on_packet_sent``,
``CryptoPair.key_phase``, ``push_ack_frame`` of one range, ``QuicSentPacket``'s
``__init__``, New Reno's ``on_packet_sent``: the default controller's, another is called)
is written out here rather than called: at one packet per movement update,
their calls were a measurable share of a node's CPU. ``tests/mesh/test_quic_tx.py``
compares the bytes and the whole state with aioquic's own flush after every packet.

No padding is ever needed for header protection's sample: aioquic pads a payload under
two bytes, and an ACK frame is at least five, a DATAGRAM frame at least two.

When the packet would not be exactly that (the queued DATAGRAMs do not all fit in one
packet or in the congestion window, the ACK or its PING would not fit, a qlog is being
written), :meth:`DatagramPacketWriter.write` returns None having changed nothing that
aioquic's flush does not set first anyway, and the caller lets aioquic build. Which
connections may use it at all (established, only DATAGRAMs and an ACK possibly
pending) is the caller's check (``mesh._quicshim._quiet_but_datagrams``); the private
attributes this reads and writes are listed in that module's docstring.
"""

from __future__ import annotations

from struct import Struct
from typing import Any

from aioquic import tls
from aioquic._buffer import Buffer
from aioquic.buffer import size_uint_var
from aioquic.quic.congestion.reno import RenoCongestionControl
from aioquic.quic.connection import ACK_FRAME_CAPACITY, QuicConnection
from aioquic.quic.packet import (
    PACKET_FIXED_BIT,
    QuicFrameType,
    QuicPacketType,
    push_ack_frame,
)
from aioquic.quic.packet_builder import PACKET_NUMBER_SEND_SIZE, QuicSentPacket

from ._quic_crypto import seal_short

__all__ = ["DatagramPacketWriter"]

_ACK = int(QuicFrameType.ACK)
_PING = int(QuicFrameType.PING)
_DATAGRAM = int(QuicFrameType.DATAGRAM_WITH_LENGTH)  # all three fit in one varint byte
_ONE_RTT = tls.Epoch.ONE_RTT
_ONE_RTT_PACKET = QuicPacketType.ONE_RTT
#: The short header's first byte before the spin bit and key phase: the fixed bit and
#: the packet number's length (aioquic always sends two bytes of it).
_FIRST_BYTE = PACKET_FIXED_BIT | (PACKET_NUMBER_SEND_SIZE - 1)
#: A PING's delivery handler arguments as ``_write_ping_frame`` passes them (no user id).
_NO_PING_UIDS: tuple[tuple[int, ...]] = ((),)
_new_object = object.__new__


class DatagramPacketWriter:
    """Writes one connection's ACK-and-DATAGRAM packets, as aioquic would (module doc).

    Made once per connection, after its handshake is confirmed: it keeps the
    application packet space and the 1-RTT ``CryptoPair`` (neither is ever replaced
    once made; a key update changes the pair in place) and a scratch buffer.
    """

    __slots__ = ("_buffer", "_conn", "_crypto", "_header_format", "_on_ack", "_on_ping", "_space")

    def __init__(self, conn: QuicConnection, space: Any) -> None:
        self._conn = conn
        self._space = space
        self._crypto = conn._cryptos[_ONE_RTT]
        # bound once (equal to a fresh one: the quiet check compares with ==)
        self._on_ack = conn._on_ack_delivery
        self._on_ping = conn._on_ping_delivery
        self._buffer = Buffer(capacity=conn._max_datagram_size)
        self._header_format = _header_format(len(conn._peer_cid.cid))

    def write(self, now: float) -> list[tuple[bytes, Any]] | None:
        """Send every queued DATAGRAM, with the ACK if one is due by ``now``, in one packet.

        Returns what aioquic's ``datagrams_to_send(now)`` would: the one datagram, or
        ``[]`` when pacing holds the packet back (the connection's pacing time then
        says until when) or there is nothing to send. Returns None, having changed
        nothing but the pacer's clock and the pacing time (which aioquic sets anew),
        when aioquic would build something else (see the module doc). The caller
        checks that only DATAGRAMs and an ACK may be pending.
        """
        conn = self._conn
        if conn._quic_logger is not None:
            return None  # qlog wants aioquic's log of every frame
        pending = conn._datagrams_pending
        space = self._space
        loss = conn._loss
        pacer = loss._pacer
        packet_time = pacer.packet_time

        # pacing holds back anything but a due ACK (and then sets the pacing time): the
        # pacer's next_send_time and update_bucket, inlined (no call per packet)
        conn._pacing_at = None
        ack_at = space.ack_at
        paced = ack_at is None or ack_at >= now
        if paced and packet_time is not None:
            evaluation_time = pacer.evaluation_time
            if now > evaluation_time:  # the pacer's update_bucket
                bucket = pacer.bucket_time + (now - evaluation_time)
                bucket_max = pacer.bucket_max
                pacer.bucket_time = bucket_max if bucket_max < bucket else bucket  # min()
                pacer.evaluation_time = now
            if pacer.bucket_time <= 0:
                conn._pacing_at = now + packet_time
                return []
        acked = ack_at is not None and ack_at <= now
        if not pending and not acked:
            return []  # aioquic starts a packet, finds nothing for it and stops

        # the builder's limits, as room left for frames: the datagram size and the
        # congestion window's room (QuicPacketRecovery's properties read from the
        # controller), less the AEAD tag and the header
        crypto = self._crypto
        size = conn._max_datagram_size
        peer_cid = conn._peer_cid.cid
        header_size = 1 + len(peer_cid) + PACKET_NUMBER_SEND_SIZE
        tag = crypto.aead_tag_size
        buffer_room = size - tag - header_size
        cc = loss._cc
        window = cc.congestion_window - cc.bytes_in_flight
        flight_room = (size if size < window else window) - tag - header_size
        buf = self._buffer
        if buf.capacity != size:
            buf = self._buffer = Buffer(capacity=size)
        packet_number = conn._packet_number

        # frames, from the buffer's start (nothing is changed until the packet is known
        # to be aioquic's); used: the bytes written so far
        buf.seek(0)
        used = 0
        handlers: list[tuple[Any, Any]] = []
        # a DATAGRAM or PING puts the packet in flight and makes it ack-eliciting
        eliciting = bool(pending)
        if acked:
            if buffer_room < ACK_FRAME_CAPACITY:
                return None
            delay = int((now - space.largest_received_time) * 1000000)
            delay >>= conn._local_ack_delay_exponent
            buf.push_uint8(_ACK)
            queued: list[range] = space.ack_queue._RangeSet__ranges
            if len(queued) == 1:
                # push_ack_frame of one range (the usual: nothing lost or reordered since
                # the last ACK was acknowledged): never bounded, as the room exceeds four
                # varints of the largest size (ACK_FRAME_CAPACITY)
                largest = queued[0].stop - 1
                buf.push_uint_var(largest)
                buf.push_uint_var(delay)
                buf.push_uint_var(0)
                buf.push_uint_var(largest - queued[0].start)
                ranges = 1
            else:
                ranges = push_ack_frame(buf, space.ack_queue, delay, buffer_room - 1)
            used = buf.tell()
            handlers.append((self._on_ack, (space, space.largest_received_packet)))
            if ranges > 1 and packet_number % 8 == 0:  # ACK-of-ACK trigger
                if flight_room - used < 1:
                    return None
                buf.push_uint8(_PING)
                used += 1
                handlers.append((self._on_ping, _NO_PING_UIDS))
                eliciting = True
        for data in pending:
            length = len(data)
            # the frame: its type, the length as a varint (size_uint_var's two common
            # cases), the data
            used += length + (
                2 if length < 0x40 else 3 if length < 0x4000 else 1 + size_uint_var(length)
            )
            if used > flight_room:
                return None  # aioquic splits them or leaves some for the window
            buf.push_uint8(_DATAGRAM)
            buf.push_uint_var(length)
            buf.push_bytes(data)
        phase = crypto.recv.key_phase  # CryptoPair.key_phase, the property's both cases
        if crypto._update_key_requested:
            phase = 1 - phase
        header_format = self._header_format
        if header_format.size != header_size:  # a connection ID of another length
            header_format = self._header_format = _header_format(len(peer_cid))
        header = header_format.pack(
            _FIRST_BYTE | (conn._spin_bit << 5) | (phase << 2), peer_cid, packet_number & 0xFFFF
        )
        datagram = seal_short(crypto, header, buf.data_slice(0, used), packet_number)

        # what the frame writers, _write_application's loop and _flush_builder change
        pending.clear()
        if acked:
            space.ack_at = None
        if packet_time is not None:
            # the pacer's update_after_send, then the loop's next turn: it finds nothing to
            # send (no ACK is due any more) after asking the pacer, whose answer stays as
            # the connection's pacing time
            bucket = pacer.bucket_time
            evaluation_time = pacer.evaluation_time
            if now > evaluation_time:  # update_bucket again (done above unless an ACK was due)
                bucket += now - evaluation_time
                bucket_max = pacer.bucket_max
                bucket = bucket_max if bucket_max < bucket else bucket
                pacer.evaluation_time = now
            bucket = 0.0 if bucket < packet_time else bucket - packet_time
            pacer.bucket_time = bucket
            conn._pacing_at = now + packet_time if bucket <= 0 else None
        sent_bytes = len(datagram)
        # QuicSentPacket(epoch=..., ...) without its dataclass __init__ (a Python call of
        # nine keyword arguments per packet): the same instance, every field set
        packet = _new_object(QuicSentPacket)
        packet.__dict__ = {
            "epoch": _ONE_RTT,
            "in_flight": eliciting,
            "is_ack_eliciting": eliciting,
            "is_crypto_packet": False,
            "packet_number": packet_number,
            "packet_type": _ONE_RTT_PACKET,
            "sent_time": now,
            "sent_bytes": sent_bytes,
            "delivery_handlers": handlers,
            "quic_logger_frames": [],
        }
        conn._packet_number = packet_number + 1
        # the loss recovery's on_packet_sent (no qlog: checked above); in flight exactly
        # when ack-eliciting
        space.sent_packets[packet_number] = packet
        if eliciting:
            space.ack_eliciting_in_flight += 1
            if loss.handshake_confirmed:
                loss._time_of_last_sent_ack_eliciting_packet = now
            if type(cc) is RenoCongestionControl:  # its on_packet_sent, in line
                cc.bytes_in_flight += sent_bytes
            else:
                cc.on_packet_sent(packet=packet)
            if not conn._ack_eliciting_sent_since_receipt:
                # the idle timer restarts on the first ack-eliciting packet since a receipt
                conn._close_at = now + conn._idle_timeout()
                conn._ack_eliciting_sent_since_receipt = True
        path = conn._network_paths[0]
        path.bytes_sent += sent_bytes
        return [(datagram, path.addr)]


def _header_format(cid_length: int) -> Struct:
    """The short header's layout: the first byte, the destination connection ID of
    ``cid_length`` bytes and the packet number's two low bytes."""
    return Struct(f"!B{cid_length}sH")
