"""Receive fast path: a 1-RTT packet of DATAGRAM, ACK and PADDING frames (aioquic 1.7.2).

Nearly every packet a busy node receives is one of these: movement DATAGRAMs and the ACKs
riding with them, on an established connection. aioquic's ``receive_datagram`` handles one
through a generic pass (a header object, the destination-CID search, per-epoch dictionary
lookups keyed by an ``Enum``, a receive context, a frame-handler table, probing and
migration checks) that costs about as much as the protocol work itself. A
:class:`ShortPacketReceiver` does the same work on the same state, in aioquic's order, for
exactly this case:

1. decides, *before changing anything*, that the packet is the case: the connection is
   ``CONNECTED`` without a qlog, the datagram comes from the validated active path, the
   packet has a short header addressed to one of the connection's IDs (a server: the active
   one, or aioquic's migration steps would run), the key phase is
   the current one, it decrypts, is no duplicate, has no reserved bit set, and its frames
   (parsed in full first) are only PADDING, DATAGRAM (within the configured size) and
   well-formed ACKs;
2. then applies what aioquic would: the expected packet number, the spin bit, each frame in
   order (a ``DatagramFrameReceived`` event; an ACK through :func:`mesh._quic_ack.
   on_ack_received`, aioquic's ``on_ack_received`` without its ``RangeSet``: the delivery
   handlers, RTT, congestion control and loss detection), the idle
   timer, and the packet's record in the application space (ACK queue, largest received,
   the delayed ACK's time).

Anything else returns False with nothing changed, and the caller hands the unchanged bytes
to aioquic: a long header, another CID, an unknown or unvalidated path, a key update, a
decrypt failure, a duplicate, any other frame type, a malformed frame, another state. So the
connection behaves exactly as aioquic's; ``tests/mesh/test_quic_rx.py`` checks it against
plain aioquic over a seeded lossy, reordered script. aioquic's small helpers on this path
(``decode_packet_number``, the duplicate window's ``__contains__`` and ``add``, the ACK
queue's ``add`` of the next packet number) are written out in :meth:`ShortPacketReceiver.
receive`: a call each per received packet was a measurable share of a node's CPU.

Private attributes read or written (the rest of the mesh's are listed in
:mod:`mesh._quicshim`):

========================================  =============================================
what                                      private attributes
========================================  =============================================
the checks                                ``_state``, ``_quic_logger``, ``_network_paths``,
                                          ``_close_at``, ``_host_cids``, ``_configuration``,
                                          ``_peer_cid``, ``_is_client``, ``_cryptos``
                                          (and 0-RTT's ``recv``), ``_spaces``
decryption                                ``CryptoPair.recv`` (``key_phase``, ``hp``,
                                          ``aead``)
what the packet changes                   the space's ``expected_packet_number``,
                                          ``received_packets`` (``_lower``,
                                          ``_received``, ``_size``), ``ack_queue``
                                          (``_RangeSet__ranges``),
                                          ``largest_received_*``, ``ack_at``;
                                          ``_spin_bit``, ``_spin_highest_pn``,
                                          ``_events``, ``_close_at`` (``_idle_timeout``),
                                          ``_ack_eliciting_sent_since_receipt``
an ACK frame                              ``_loss`` (``peer_completed_address_validation``;
                                          the rest in :mod:`mesh._quic_ack`),
                                          ``_remote_ack_delay_exponent``
a frame aioquic would reject mid-way      ``_logger``, ``close``
========================================  =============================================
"""

from __future__ import annotations

from typing import Any

from aioquic import tls
from aioquic._buffer import Buffer
from aioquic._crypto import CryptoError
from aioquic.quic.connection import (
    QuicConnection,
    QuicConnectionError,
    QuicConnectionState,
)
from aioquic.quic.events import DatagramFrameReceived
from aioquic.quic.packet import PACKET_SPIN_BIT
from aioquic.quic.recovery import MAX_ACK_RANGES, QuicPacketSpace

from ._quic_ack import on_ack_received
from ._quic_crypto import open_payload, unmask_short_header

__all__ = ["ShortPacketReceiver"]

_PADDING = 0x00
_ACK = 0x02
_ACK_ECN = 0x03
_DATAGRAM = 0x30
_DATAGRAM_WITH_LENGTH = 0x31
_CONNECTED = QuicConnectionState.CONNECTED
_new_object = object.__new__


class ShortPacketReceiver:
    """The receive fast path of one connection (see the module docstring).

    Holds the connection's application packet space and 1-RTT crypto pair once they exist
    (aioquic makes both once per ``_initialize``, before the connection is established;
    a new ``_initialize`` is noticed by the space table's identity).
    """

    __slots__ = ("_conn", "_spaces", "_space", "_pair", "_zero_rtt")

    def __init__(self, conn: QuicConnection) -> None:
        # reads nothing of the connection yet: it may be made before aioquic's __init__
        self._conn = conn
        self._spaces: object = None
        self._space: QuicPacketSpace | None = None
        self._pair: Any = None
        self._zero_rtt: Any = None

    def receive(self, data: bytes, addr: Any, now: float) -> bool:
        """Handle ``data`` as aioquic's ``receive_datagram(data, addr, now)`` would and return
        True, or return False having changed nothing: not the fast path's case."""
        conn = self._conn
        # 1. the case? (nothing changes until every check passed)
        if conn._state is not _CONNECTED or conn._quic_logger is not None:
            return False
        first_byte = data[0] if data else 0
        if first_byte & 0xC0 != 0x40:  # long header, or the fixed bit clear
            return False
        path = conn._network_paths[0]
        if path.addr != addr or not path.is_validated or conn._close_at is None:
            return False
        cid_end = 1 + conn._configuration.connection_id_length
        destination_cid = data[1:cid_end]
        for known in conn._host_cids:
            if known.cid == destination_cid:
                break
        else:
            return False  # an unknown (or retired) CID: aioquic drops the packet
        if destination_cid != conn.host_cid and not conn._is_client:
            return False  # the client moved to another of our CIDs: aioquic's migration
        if conn._peer_cid.sequence_number is None:
            return False
        if conn._spaces is not self._spaces:
            self._spaces = conn._spaces
            self._space = conn._spaces[tls.Epoch.ONE_RTT]
            self._pair = conn._cryptos[tls.Epoch.ONE_RTT]
            self._zero_rtt = conn._cryptos[tls.Epoch.ZERO_RTT]
        if not conn._is_client and self._zero_rtt.recv.aead is not None:
            return False  # aioquic's full path tears the 0-RTT keys down on this packet
        space = self._space
        recv = self._pair.recv
        if space is None or recv.aead is None:
            return False
        try:
            # the header alone (mesh._quic_crypto): aioquic copies the whole packet to
            # unmask five bytes
            plain_header, truncated = unmask_short_header(recv, data, cid_end)
        except CryptoError:
            return False  # too short to sample
        first = plain_header[0]
        if (first & 4) >> 2 != recv.key_phase or first & 0x18:
            return False  # a key update, or reserved bits aioquic closes on
        # aioquic's decode_packet_number, inlined (RFC 9000 appendix A.3)
        expected = space.expected_packet_number
        window = 1 << (((first & 0x03) + 1) * 8)
        half_window = window // 2
        packet_number = (expected & ~(window - 1)) | truncated
        if packet_number <= expected - half_window and packet_number < (1 << 62) - window:
            packet_number += window
        elif packet_number > expected + half_window and packet_number >= window:
            packet_number -= window
        received = space.received_packets  # QuicPacketNumberWindow.__contains__:
        if packet_number < received._lower or packet_number in received._received:
            return False  # a duplicate (or below the window): aioquic drops it
        try:
            payload = open_payload(recv, data, plain_header, packet_number)
        except CryptoError:
            return False
        frames = _parse_frames(payload, conn._configuration.max_datagram_frame_size)
        if frames is None:
            return False

        # 2. what aioquic's receive_datagram and _payload_received do with such a packet
        if packet_number > space.expected_packet_number:
            space.expected_packet_number = packet_number + 1
        if packet_number > conn._spin_highest_pn:
            spin_bit = bool(first & PACKET_SPIN_BIT)
            conn._spin_bit = not spin_bit if conn._is_client else spin_bit
            conn._spin_highest_pn = packet_number
        is_ack_eliciting = False
        try:
            for frame in frames:
                if type(frame) is bytes:
                    is_ack_eliciting = True
                    # DatagramFrameReceived(data=frame) without the dataclass __init__
                    event = _new_object(DatagramFrameReceived)
                    event.__dict__ = {"data": frame}
                    conn._events.append(event)
                else:
                    ranges, ack_delay_encoded = frame
                    loss = conn._loss
                    if not loss.peer_completed_address_validation:
                        loss.peer_completed_address_validation = True
                    on_ack_received(
                        loss,
                        space,
                        ranges,
                        (ack_delay_encoded << conn._remote_ack_delay_exponent) / 1000000,
                        now,
                    )
        except QuicConnectionError as exc:  # as aioquic's receive_datagram answers one
            conn._logger.warning(exc)
            conn.close(
                error_code=exc.error_code,
                frame_type=exc.frame_type,
                reason_phrase=exc.reason_phrase,
            )
        if conn._state is not _CONNECTED or conn._close_pending:
            return True  # from CONNECTED, any other state is an end state
        conn._close_at = now + conn._idle_timeout()
        conn._ack_eliciting_sent_since_receipt = False
        # the active path and CID: no migration, no path to add or promote
        if not space.discarded:
            if packet_number > space.largest_received_packet:
                space.largest_received_packet = packet_number
                space.largest_received_time = now
            # RangeSet.add(packet_number) where it extends the last range or starts one
            # past it, maybe the first (the usual, in-order case); aioquic's own otherwise
            ack_queue = space.ack_queue
            queued: list[range] = ack_queue._RangeSet__ranges  # type: ignore[attr-defined]
            last = queued[-1] if queued else None
            if last is not None and last.stop == packet_number:
                queued[-1] = range(last.start, packet_number + 1)
            elif last is None or last.stop < packet_number:
                queued.append(range(packet_number, packet_number + 1))
            else:
                ack_queue.add(packet_number)
            # QuicPacketNumberWindow.add: not below its lower bound (checked above)
            received._received.add(packet_number)
            lower = packet_number - received._size + 1
            if lower > received._lower:
                received._lower = lower
                if len(received._received) > 2 * received._size:
                    received._received = {pn for pn in received._received if pn >= lower}
            if len(queued) > MAX_ACK_RANGES:
                ack_queue.shift()
            if is_ack_eliciting and space.ack_at is None:
                space.ack_at = now + conn._ack_delay
        return True


def _parse_frames(payload: bytes, max_datagram_frame_size: int | None) -> list[Any] | None:
    """The packet's DATAGRAM payloads (``bytes``) and ACK frames (``(RangeSet, delay)``) in
    order, PADDING skipped; None when it holds anything else, nothing, or anything aioquic
    would reject (a malformed frame, a DATAGRAM not allowed or too large)."""
    buf = Buffer(data=payload)
    frames: list[Any] = []
    found = False
    try:
        while not buf.eof():
            frame_type = buf.pull_uint_var()
            found = True
            if frame_type == _DATAGRAM_WITH_LENGTH or frame_type == _DATAGRAM:
                start = buf.tell()
                if frame_type == _DATAGRAM_WITH_LENGTH:
                    length = buf.pull_uint_var()
                else:
                    length = buf.capacity - start
                data = buf.pull_bytes(length)
                if max_datagram_frame_size is None or buf.tell() - start >= max_datagram_frame_size:
                    return None
                frames.append(data)
            elif frame_type == _ACK or frame_type == _ACK_ECN:
                # aioquic's pull_ack_frame, the ranges as (start, stop) pairs, descending
                end = buf.pull_uint_var()  # largest acknowledged
                delay = buf.pull_uint_var()
                range_count = buf.pull_uint_var()
                count = buf.pull_uint_var()  # first ACK range
                ranges = [(end - count, end + 1)]
                end -= count
                for _ in range(range_count):
                    end -= buf.pull_uint_var() + 2
                    count = buf.pull_uint_var()
                    ranges.append((end - count, end + 1))
                    end -= count
                if end < 0:
                    return None  # a negative packet number: aioquic's FRAME_ENCODING_ERROR
                frames.append((ranges, delay))
                if frame_type == _ACK_ECN:
                    buf.pull_uint_var()
                    buf.pull_uint_var()
                    buf.pull_uint_var()
            elif frame_type == _PADDING:
                pos = buf.tell()
                rest = payload[pos:]
                buf.seek(pos + len(rest) - len(rest.lstrip(b"\x00")))
            else:
                return None
    except ValueError:  # BufferReadError
        return None
    return frames if found else None
