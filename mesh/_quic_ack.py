"""ACK fast path: aioquic's ``QuicPacketRecovery.on_ack_received`` for a 1-RTT ACK frame.

About every second movement packet carries an ACK, and aioquic's ``on_ack_received``
(aioquic 1.7.2) handles each through a generic pass: a :class:`~aioquic.quic.rangeset.RangeSet`
built by ``pull_ack_frame`` and walked through its ``bounds`` and iterator, a copy of the
sent-packet numbers bisected per range, and a loss detection that runs a persistent-congestion
check and the (mesh-wrapped) ``_on_packets_lost`` even when nothing is lost.
:func:`on_ack_received` does the same work on the same state, in aioquic's order, for the
ACK frames :mod:`mesh._quic_rx` parses itself (ranges as pairs, no ``RangeSet``):

1. ``largest_acked_packet``; the sent packets in the acknowledged ranges are removed in
   ascending order, each counted out of ``ack_eliciting_in_flight``, given to the
   congestion controller's own ``on_packet_acked`` when in flight (New Reno's, the default,
   written out: one call per movement packet), and its delivery handlers
   called with ``ACKED`` (an ACK frame's ``_on_ack_delivery`` prunes the ACK queue: the
   ACK-of-ACK); nothing newly acknowledged ends it there, as in aioquic;
2. an RTT sample when the largest acknowledged packet is newly acknowledged and any newly
   acknowledged packet was ack-eliciting: aioquic's ``latest_rtt``/``min_rtt``/
   ``smoothed_rtt``/``rttvar`` arithmetic (the ACK delay capped at ``max_ack_delay``), then
   the controller's ``on_rtt_measurement`` and the pacer's ``update_rate`` (its arithmetic,
   written out: the call per sample cost more than it);
3. loss detection: the packets up to the largest acknowledged set the space's ``loss_time``
   exactly as aioquic's ``_detect_loss``; as soon as one of them is lost (by packet or
   time threshold) aioquic's own ``_detect_loss`` runs instead, so every loss, its
   persistent-congestion check and the ``_on_packets_lost`` wrappers are aioquic's;
4. the PTO count is reset once the peer completed address validation.

With nothing lost, aioquic's ``_detect_loss`` ends in ``_on_packets_lost(packets=[])``,
which changes nothing; the mesh's wrappers of it (``mesh._quicshim``) do nothing with an
empty list either, so skipping that call is exact. The caller checks that the connection
has no qlog (aioquic logs metrics from ``on_ack_received`` then).
``tests/mesh/test_quic_ack.py`` compares the whole recovery state with plain aioquic after
every datagram of a seeded lossy, reordered script, with Reno and Cubic.

Private attributes read or written: of ``QuicPacketRecovery``, ``_cc`` (New Reno's
``_congestion_recovery_start_time``, ``_congestion_stash``, ``_max_datagram_size``),
``_pacer`` (its ``_max_datagram_size``),
``_rtt_*``, ``_pto_count``, ``_detect_loss``, ``max_ack_delay``,
``peer_completed_address_validation``; of the space, ``sent_packets``,
``largest_acked_packet``, ``ack_eliciting_in_flight``, ``loss_time``.
"""

from __future__ import annotations

from aioquic.quic.congestion.reno import RenoCongestionControl
from aioquic.quic.packet_builder import QuicDeliveryState
from aioquic.quic.recovery import (
    K_MICRO_SECOND,
    K_PACKET_THRESHOLD,
    K_SECOND,
    K_TIME_THRESHOLD,
    QuicPacketRecovery,
    QuicPacketSpace,
)

__all__ = ["on_ack_received"]

_ACKED = QuicDeliveryState.ACKED
#: aioquic's floor of an RTT sample (in ``on_ack_received``, "cannot be < 1 ms")
_MIN_RTT_SAMPLE = 0.001


def on_ack_received(
    loss: QuicPacketRecovery,
    space: QuicPacketSpace,
    ranges: list[tuple[int, int]],
    ack_delay: float,
    now: float,
) -> None:
    """``loss.on_ack_received(ack_rangeset=..., ack_delay=ack_delay, now=now, space=space)``
    for an ACK frame of ``ranges``: ``(start, stop)`` packet-number ranges, disjoint, not
    adjacent, non-negative and in descending order (as the frame lists them), at least one."""
    # 1. the newly acknowledged packets
    largest_acked = ranges[0][1] - 1
    if largest_acked > space.largest_acked_packet:
        space.largest_acked_packet = largest_acked

    # the sent packets in the ranges, ascending (sent_packets is in sending order, so in
    # packet-number order): aioquic's order of removal and handler calls
    sent_packets = space.sent_packets
    acked: list[int] = []
    if len(ranges) == 1:
        lowest = ranges[0][0]
        for packet_number in sent_packets:
            if packet_number > largest_acked:
                break
            if packet_number >= lowest:
                acked.append(packet_number)
    else:  # one pass up both: the ranges from the lowest (a peer chooses how many)
        index = len(ranges) - 1
        start, stop = ranges[index]
        for packet_number in sent_packets:
            if packet_number > largest_acked:
                break
            while packet_number >= stop:  # never past ranges[0], which holds largest_acked
                index -= 1
                start, stop = ranges[index]
            if packet_number >= start:
                acked.append(packet_number)
    if not acked:
        return  # nothing newly acknowledged: aioquic returns here too

    cc = loss._cc
    is_ack_eliciting = False
    for packet_number in acked:
        packet = sent_packets.pop(packet_number)
        if packet.is_ack_eliciting:
            is_ack_eliciting = True
            space.ack_eliciting_in_flight -= 1
        if packet.in_flight:
            if type(cc) is RenoCongestionControl:  # its on_packet_acked, in line
                sent_bytes = packet.sent_bytes
                cc.bytes_in_flight -= sent_bytes
                # no window growth in congestion recovery
                if packet.sent_time > cc._congestion_recovery_start_time:  # type: ignore[operator]
                    ssthresh = cc.ssthresh
                    if ssthresh is None or cc.congestion_window < ssthresh:
                        cc.congestion_window += sent_bytes  # slow start
                    else:  # congestion avoidance
                        stash = cc._congestion_stash + sent_bytes
                        count = stash // cc.congestion_window
                        if count:
                            stash -= count * cc.congestion_window
                            cc.congestion_window += count * cc._max_datagram_size
                        cc._congestion_stash = stash
            else:
                cc.on_packet_acked(packet=packet, now=now)
        for handler, args in packet.delivery_handlers:
            handler(_ACKED, *args)

    # 2. the RTT sample (``packet``, the last one removed, is the largest newly acknowledged)
    if is_ack_eliciting and acked[-1] == largest_acked:
        latest_rtt = now - packet.sent_time  # type: ignore[operator]  # set when sent
        max_ack_delay = loss.max_ack_delay
        if ack_delay > max_ack_delay:  # min(ack_delay, max_ack_delay)
            ack_delay = max_ack_delay
        rtt_latest = latest_rtt if latest_rtt >= _MIN_RTT_SAMPLE else _MIN_RTT_SAMPLE
        if rtt_latest < loss._rtt_min:
            loss._rtt_min = rtt_latest
        if rtt_latest > loss._rtt_min + ack_delay:
            rtt_latest -= ack_delay
        loss._rtt_latest = rtt_latest
        if not loss._rtt_initialized:
            loss._rtt_first_sample_time = now
            loss._rtt_initialized = True
            loss._rtt_variance = latest_rtt / 2
            loss._rtt_smoothed = latest_rtt
        else:
            deviation = loss._rtt_min - rtt_latest
            if deviation < 0.0:  # abs(): a -0.0 left as is adds nothing either way
                deviation = -deviation
            loss._rtt_variance = 3 / 4 * loss._rtt_variance + 1 / 4 * deviation
            loss._rtt_smoothed = 7 / 8 * loss._rtt_smoothed + 1 / 8 * rtt_latest
        cc.on_rtt_measurement(now=now, rtt=latest_rtt)
        # the pacer's update_rate(congestion_window, smoothed_rtt), its min and max written
        # as the comparisons they make
        pacer = loss._pacer
        window = cc.congestion_window
        smoothed_rtt = loss._rtt_smoothed
        pacing_rate = window / (K_MICRO_SECOND if K_MICRO_SECOND > smoothed_rtt else smoothed_rtt)
        max_datagram_size = pacer._max_datagram_size
        packet_time = max_datagram_size / pacing_rate
        if K_SECOND < packet_time:
            packet_time = K_SECOND
        pacer.packet_time = packet_time if packet_time > K_MICRO_SECOND else K_MICRO_SECOND
        burst = window // 4
        if 16 * max_datagram_size < burst:
            burst = 16 * max_datagram_size
        if burst < 2 * max_datagram_size:
            burst = 2 * max_datagram_size
        bucket_max = burst / pacing_rate
        pacer.bucket_max = bucket_max
        if pacer.bucket_time > bucket_max:
            pacer.bucket_time = bucket_max

    # 3. loss detection: aioquic's _detect_loss whenever a packet is lost
    if loss._rtt_initialized:
        rtt_latest = loss._rtt_latest
        rtt_smoothed = loss._rtt_smoothed
        loss_delay = K_TIME_THRESHOLD * (rtt_smoothed if rtt_smoothed > rtt_latest else rtt_latest)
    else:
        loss_delay = K_TIME_THRESHOLD * loss._rtt_initial
    largest = space.largest_acked_packet
    packet_threshold = largest - K_PACKET_THRESHOLD
    time_threshold = now - loss_delay
    loss_time: float | None = None
    lost = False
    for packet_number, packet in sent_packets.items():
        if packet_number > largest:
            break
        sent_time: float = packet.sent_time  # type: ignore[assignment]  # set when sent
        if packet_number <= packet_threshold or sent_time <= time_threshold:
            lost = True
            break
        packet_loss_time = sent_time + loss_delay
        if loss_time is None or loss_time > packet_loss_time:
            loss_time = packet_loss_time
    if lost:
        loss._detect_loss(now=now, space=space)
    else:
        space.loss_time = loss_time

    # 4. the PTO count
    if loss.peer_completed_address_validation:
        loss._pto_count = 0
