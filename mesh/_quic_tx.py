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

from typing import Any

from aioquic import tls
from aioquic._buffer import Buffer
from aioquic.buffer import size_uint_var
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


class DatagramPacketWriter:
    """Writes one connection's ACK-and-DATAGRAM packets, as aioquic would (module doc).

    Made once per connection, after its handshake is confirmed: it keeps the
    application packet space and the 1-RTT ``CryptoPair`` (neither is ever replaced
    once made; a key update changes the pair in place) and a scratch buffer.
    """

    __slots__ = ("_buffer", "_conn", "_crypto", "_on_ack", "_on_ping", "_space")

    def __init__(self, conn: QuicConnection, space: Any) -> None:
        self._conn = conn
        self._space = space
        self._crypto = conn._cryptos[_ONE_RTT]
        # bound once (equal to a fresh one: the quiet check compares with ==)
        self._on_ack = conn._on_ack_delivery
        self._on_ping = conn._on_ping_delivery
        self._buffer = Buffer(capacity=conn._max_datagram_size)

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

        # pacing holds back anything but a due ACK (and then sets the pacing time)
        conn._pacing_at = None
        ack_at = space.ack_at
        if ack_at is None or ack_at >= now:
            pacing_at = pacer.next_send_time(now=now)
            if pacing_at is not None:
                conn._pacing_at = pacing_at
                return []
        acked = ack_at is not None and ack_at <= now
        if not pending and not acked:
            return []  # aioquic starts a packet, finds nothing for it and stops

        # the builder's limits, as offsets a frame's end may reach: the datagram size and
        # the congestion window's room, less the AEAD tag
        crypto = self._crypto
        size = conn._max_datagram_size
        tag = crypto.aead_tag_size
        buffer_end = size - tag
        flight_end = min(size, loss.congestion_window - loss.bytes_in_flight) - tag
        buf = self._buffer
        if buf.capacity != size:
            buf = self._buffer = Buffer(capacity=size)
        peer_cid = conn._peer_cid.cid
        header_size = 1 + len(peer_cid) + PACKET_NUMBER_SEND_SIZE
        packet_number = conn._packet_number

        # frames (nothing is changed until the packet is known to be aioquic's)
        buf.seek(header_size)
        handlers: list[tuple[Any, Any]] = []
        # a DATAGRAM or PING puts the packet in flight and makes it ack-eliciting
        eliciting = bool(pending)
        if acked:
            if buffer_end - header_size < ACK_FRAME_CAPACITY:
                return None
            delay = int((now - space.largest_received_time) * 1000000)
            buf.push_uint8(_ACK)
            ranges = push_ack_frame(
                buf,
                space.ack_queue,
                delay >> conn._local_ack_delay_exponent,
                buffer_end - buf.tell(),
            )
            handlers.append((self._on_ack, (space, space.largest_received_packet)))
            if ranges > 1 and packet_number % 8 == 0:  # ACK-of-ACK trigger
                if flight_end - buf.tell() < 1:
                    return None
                buf.push_uint8(_PING)
                handlers.append((self._on_ping, _NO_PING_UIDS))
                eliciting = True
        for data in pending:
            length = len(data)
            if flight_end - buf.tell() < 1 + size_uint_var(length) + length:
                return None  # aioquic splits them or leaves some for the window
            buf.push_uint8(_DATAGRAM)
            buf.push_uint_var(length)
            buf.push_bytes(data)
        payload = buf.data_slice(header_size, buf.tell())
        buf.seek(0)
        buf.push_uint8(_FIRST_BYTE | (conn._spin_bit << 5) | (crypto.key_phase << 2))
        buf.push_bytes(peer_cid)
        buf.push_uint16(packet_number & 0xFFFF)
        datagram = seal_short(crypto, buf.data_slice(0, header_size), payload, packet_number)

        # what the frame writers, _write_application's loop and _flush_builder change
        pending.clear()
        if acked:
            space.ack_at = None
        pacer.update_after_send(now=now)
        # the loop's next turn finds nothing to send, after asking the pacer (no ACK is
        # due any more), whose answer stays as the connection's pacing time
        conn._pacing_at = pacer.next_send_time(now=now)
        sent_bytes = len(datagram)
        packet = QuicSentPacket(
            epoch=_ONE_RTT,
            in_flight=eliciting,
            is_ack_eliciting=eliciting,
            is_crypto_packet=False,
            packet_number=packet_number,
            packet_type=_ONE_RTT_PACKET,
            sent_time=now,
            sent_bytes=sent_bytes,
            delivery_handlers=handlers,
        )
        conn._packet_number = packet_number + 1
        loss.on_packet_sent(packet=packet, space=space)
        if eliciting and not conn._ack_eliciting_sent_since_receipt:
            # the idle timer restarts on the first ack-eliciting packet since a receipt
            conn._close_at = now + conn._idle_timeout()
            conn._ack_eliciting_sent_since_receipt = True
        path = conn._network_paths[0]
        path.bytes_sent += sent_bytes
        return [(datagram, path.addr)]
