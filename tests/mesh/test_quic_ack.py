"""The ACK fast path (mesh/_quic_ack.py): the same loss-recovery state as plain aioquic."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from aioquic import tls
from aioquic._buffer import Buffer
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import push_ack_frame
from aioquic.quic.rangeset import RangeSet

from mesh import _quic_rx, _quicshim

from .test_quic_rx import CLIENT_ADDR, SERVER_ADDR, _event, _pair, _raw_packet

CONGESTION = ["reno", "cubic"]


class FastReceiver(QuicConnection):
    """Plain aioquic but for the receive fast path (and the mesh's wrapper of the loss
    recovery's ``_on_packets_lost``): what the ACK fast path changes, and nothing else of
    the mesh's connection (its own send path and timer are compared in test_quicshim)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rx = _quic_rx.ShortPacketReceiver(self)
        _quicshim._watch_received_frames(self)

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
        if not self._rx.receive(data, addr, now):
            super().receive_datagram(data, addr, now)


def _fields(obj: object) -> list[tuple[str, object]]:
    """An object's attributes, nested objects (the controller's RTT monitor) expanded."""
    return [(k, _fields(v) if hasattr(v, "__dict__") else v) for k, v in sorted(vars(obj).items())]


def _recovery(conn: QuicConnection, lost: _quicshim.LossCounter) -> tuple[object, ...]:
    """Everything an ACK may change: the 1-RTT space's sent packets and loss fields, its ACK
    queue (ACK-of-ACK), the RTT estimates, PTO count, congestion controller, pacer, timer."""
    space = conn._spaces[tls.Epoch.ONE_RTT]
    loss = conn._loss
    return (
        [
            (pn, p.sent_time, p.sent_bytes, p.in_flight, p.is_ack_eliciting)
            for pn, p in space.sent_packets.items()
        ],
        space.largest_acked_packet,
        space.ack_eliciting_in_flight,
        space.loss_time,
        list(space.ack_queue),
        space.ack_at,
        loss._rtt_initialized,
        loss._rtt_first_sample_time,
        loss._rtt_latest,
        loss._rtt_min,
        loss._rtt_smoothed,
        loss._rtt_variance,
        loss._pto_count,
        loss._time_of_last_sent_ack_eliciting_packet,
        loss.peer_completed_address_validation,
        (loss._cc.congestion_window, loss._cc.ssthresh, loss._cc.bytes_in_flight),
        _fields(loss._cc),
        _fields(loss._pacer),
        lost.lost,
        conn.get_timer(),
    )


def _scripted_trace(
    cls: type[QuicConnection], congestion: str, steps: int = 3000, seed: int = 1616
) -> list[object]:
    """A seeded exchange of movement DATAGRAMs (and their ACKs) both ways: lost, reordered
    and duplicated packets (ACKs with gaps, ACKs of nothing new, losses by packet and by
    time threshold), a varying pace and piggybacked or delayed ACKs (so varying ACK delays
    and RTT samples), bursts, a blackout long enough for PTOs and persistent congestion;
    the receiver's events and recovery state after every datagram, every flush's sizes."""
    rng = random.Random(seed)
    client, server = _pair(cls, congestion)
    lost = {id(c): _quicshim.count_lost_packets(c) for c in (client, server)}
    addr = {id(client): CLIENT_ADDR, id(server): SERVER_ADDR}
    held: list[tuple[int, QuicConnection, bytes, Any]] = []
    trace: list[object] = []
    now = 1.0
    for i in range(steps):
        now += rng.choice((0.001, 0.004, 0.016, 0.016, 0.05))
        blackout = 1000 <= i < 1060
        for src in (client, server):
            for _ in range(rng.choice((0, 1, 1, 1, 2, 6))):
                src.send_datagram_frame(b"m" * rng.randrange(20, 400))
            if rng.random() < 0.3:
                _quicshim.piggyback_ack(src, now)
        for item in [h for h in held if h[0] == i]:
            held.remove(item)
            item[1].receive_datagram(item[2], item[3], now=now)
            trace.append([_event(e) for e in iter(item[1].next_event, None)])
            trace.append(_recovery(item[1], lost[id(item[1])]))
        for src, dst in ((client, server), (server, client)):
            out = src.datagrams_to_send(now=now)
            trace.append([len(data) for data, _addr in out])
            for data, _addr in out:
                fate = rng.random()
                if blackout or fate < 0.08:
                    continue
                if fate < 0.16:
                    held.append((i + rng.randrange(1, 6), dst, data, addr[id(src)]))
                    continue
                for _ in range(2 if fate > 0.97 else 1):  # sometimes a duplicate
                    dst.receive_datagram(data, addr[id(src)], now=now)
                    trace.append([_event(e) for e in iter(dst.next_event, None)])
                    trace.append(_recovery(dst, lost[id(dst)]))
            timer = src.get_timer()
            if timer is not None and timer <= now:
                src.handle_timer(now)
                trace.append(_recovery(src, lost[id(src)]))
    assert client._state.name == "CONNECTED" and server._state.name == "CONNECTED"
    return trace


class AckCalls:
    """How often the fast path handled an ACK, and how often it left a loss to aioquic."""

    def __init__(self) -> None:
        self.acks = 0
        self.detect_loss = 0


@pytest.fixture
def ack_calls(monkeypatch: pytest.MonkeyPatch) -> AckCalls:
    seen = AckCalls()
    original = _quic_rx.on_ack_received

    def counting(*args: Any) -> None:
        seen.acks += 1
        loss = args[0]
        detect = loss._detect_loss

        def counting_detect(**kwargs: Any) -> None:
            seen.detect_loss += 1
            detect(**kwargs)

        loss._detect_loss = counting_detect
        try:
            original(*args)
        finally:
            del loss._detect_loss

    monkeypatch.setattr(_quic_rx, "on_ack_received", counting)
    return seen


@pytest.mark.parametrize("congestion", CONGESTION)
def test_ack_fast_path_leaves_the_recovery_state_aioquic_leaves(
    congestion: str, ack_calls: AckCalls
) -> None:
    plain = _scripted_trace(QuicConnection, congestion)
    assert ack_calls.acks == 0
    mesh = _scripted_trace(FastReceiver, congestion)
    assert len(mesh) == len(plain)
    for step, (got, want) in enumerate(zip(mesh, plain, strict=True)):
        assert got == want, f"trace item {step}"
    assert ack_calls.acks > 1500
    assert ack_calls.detect_loss > 50  # losses were declared through aioquic's own path
    # the script reached what it means to: losses, RTT samples, a persistent congestion
    # collapse of the window (2 packets) and a reduced ssthresh
    last = plain[-1] if isinstance(plain[-1], tuple) else plain[-2]
    assert isinstance(last, tuple) and last[6]  # RTT initialized
    windows = [s[15] for s in plain if isinstance(s, tuple)]
    assert (2 * 1200, 2 * 1200) in [w[:2] for w in windows]  # type: ignore[index]


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("congestion", CONGESTION)
def test_ack_fast_path_soak(congestion: str, seed: int) -> None:
    """The same comparison over more seeds (``-m slow``)."""
    plain = _scripted_trace(QuicConnection, congestion, steps=2000, seed=seed)
    fast = _scripted_trace(FastReceiver, congestion, steps=2000, seed=seed)
    assert len(fast) == len(plain)
    for step, (got, want) in enumerate(zip(fast, plain, strict=True)):
        assert got == want, f"trace item {step}"


def _ack_frame(ranges: list[range], delay: int, ecn: bool = False) -> bytes:
    buf = Buffer(capacity=1000)
    buf.push_uint_var(0x03 if ecn else 0x02)
    push_ack_frame(buf, RangeSet(ranges), delay, 990)
    if ecn:
        buf.push_uint_var(1)
        buf.push_uint_var(0)
        buf.push_uint_var(2)
    return buf.data


def _without_rtt_sample(conn: QuicConnection) -> None:
    """Reset the connection's RTT estimates to aioquic's initial ones, as if its handshake
    had given no RTT sample (it always does in a pair made at one instant)."""
    loss = conn._loss
    loss._rtt_initialized = False
    loss._rtt_first_sample_time = 0.0
    loss._rtt_latest = loss._rtt_smoothed = loss._rtt_variance = 0.0
    loss._rtt_min = math.inf


@pytest.mark.parametrize("congestion", CONGESTION)
def test_crafted_ack_frames(congestion: str, ack_calls: AckCalls) -> None:
    """ACK frames another stack may write, each to a fast-path and a plain server with the
    same packets in flight, at chosen times, so that every branch of aioquic's ACK handling
    is taken: the first RTT sample (the loss delay from the initial RTT before it), an ACK
    of a non-ack-eliciting packet only, several ranges with gaps, ranges of packets never
    sent or acknowledged already, an ACK delay beyond max_ack_delay, ECN counts, two ACKs in
    one packet, an older ACK after a newer one, a sample above the smoothed RTT, packets
    left pending (a loss time) or lost by packet or time threshold; the same events and
    recovery state after each."""
    pairs = [_pair(FastReceiver, congestion), _pair(QuicConnection, congestion)]
    counters = [_quicshim.count_lost_packets(server) for _client, server in pairs]
    first = pairs[0][1]._packet_number  # the servers' next packet number

    def send(now: float, count: int = 1) -> None:  # DATAGRAM packets from each server
        for _client, server in pairs:
            for k in range(count):
                server.send_datagram_frame(b"p" * 50)
                server.datagrams_to_send(now=now + k * 0.002)

    def ack(now: float, *frames: tuple[list[tuple[int, int]], int, bool]) -> None:
        payload = b"".join(
            _ack_frame([range(first + a, first + b) for a, b in spans], delay, ecn)
            for spans, delay, ecn in frames
        )
        states = []
        delegated, lost_before = ack_calls.detect_loss, counters[1].lost
        for (client, server), lost in zip(pairs, counters, strict=True):
            server.receive_datagram(_raw_packet(client, payload), CLIENT_ADDR, now)
            events = [_event(e) for e in iter(server.next_event, None)]
            states.append((events, _recovery(server, lost)))
        assert states[0] == states[1], f"ACK at {now}"
        # aioquic's own loss detection ran exactly when it found a packet lost
        assert (ack_calls.detect_loss > delegated) == (counters[1].lost > lost_before), now

    # packet 0: a DATAGRAM (with HANDSHAKE_DONE and NEW_CONNECTION_IDs, their delivery
    # handlers); packet 1: an ACK only (of a client's DATAGRAM)
    send(2.0)
    for client, server in pairs:
        assert server._packet_number == first + 1
        server.receive_datagram(_raw_packet(client, b"\x31\x01x"), CLIENT_ADDR, 2.0)
        assert [len(d) for d, _a in server.datagrams_to_send(now=2.06)]
        assert not server._spaces[tls.Epoch.ONE_RTT].sent_packets[first + 1].is_ack_eliciting
        _without_rtt_sample(server)
    ack(2.07, ([(1, 2)], 0, False))  # no RTT sample: packet 0's loss time from the initial RTT
    send(2.1, 30)  # packets 2 to 31, sent 2 ms apart
    ack(2.16, ([(2, 4), (6, 7), (9, 12)], 5, False))  # the first sample; 0, 4, 5, 7, 8 lost
    ack(2.165, ([(0, 1), (13, 14)], 100000, False))  # a huge ACK delay; 12 pending
    ack(2.166, ([(0, 14)], 0, False))  # 12 only is new: no sample
    ack(2.2, ([(15, 16)], 0, False))  # a sample above the smoothed RTT; 14 pending
    ack(2.21, ([(14, 15), (18, 19)], 0, False))  # 16 and 17 pending
    ack(2.215, ([(16, 17)], 0, False))  # older than the last: 17 still pending
    ack(2.22, ([(17, 18), (20, 22)], 7, True))  # ECN counts
    ack(2.225, ([(22, 23)], 3, False), ([(23, 24), (26, 28)], 1, False))  # two in a packet
    ack(2.23, ([(28, 40)], 2, False))  # beyond what was sent; the rest lost
    assert ack_calls.acks == 11
    assert ack_calls.detect_loss > 0
    assert counters[1].lost > 0
    assert not pairs[1][1]._spaces[tls.Epoch.ONE_RTT].sent_packets  # all settled


def test_negative_ack_range_is_left_to_aioquic(ack_calls: AckCalls) -> None:
    """A range reaching below packet 0 is aioquic's FRAME_ENCODING_ERROR: the fast path
    leaves the packet to it (which closes the connection) and changes nothing itself."""
    client, server = _pair(_quicshim.MeshQuicConnection)
    buf = Buffer(capacity=20)
    for value in (0x02, 3, 0, 0, 5):  # largest 3, first range 5: down to -2
        buf.push_uint_var(value)
    server.receive_datagram(_raw_packet(client, buf.data), CLIENT_ADDR, 2.0)
    assert ack_calls.acks == 0
    assert server._close_pending


@pytest.mark.parametrize(
    ("window", "rtt"),
    [
        (10**7, 0.001),  # a packet time below a microsecond: held at one
        (10**6, 0.05),  # a window over 64 packets: the burst held at 16 packets
        (2400, 2.0),  # a packet time of a second or more: held at a second
        (2500, 30.0),
    ],
)
def test_pacer_rate_at_its_bounds(window: int, rtt: float, ack_calls: AckCalls) -> None:
    """The pacer's rate, set from the window and the RTT at each sample, where aioquic's
    update_rate bounds it: the packet time at a microsecond and at a second, the burst at 16
    packets (and, in the scripted trace, at 2); the same pacer as aioquic's after the ACK."""
    pairs = [_pair(FastReceiver), _pair(QuicConnection)]
    counters = [_quicshim.count_lost_packets(server) for _client, server in pairs]
    states = []
    for (client, server), lost in zip(pairs, counters, strict=True):
        server.send_datagram_frame(b"p" * 50)
        number = server._packet_number
        assert server.datagrams_to_send(now=2.0)
        server._loss._cc.congestion_window = window
        frame = _ack_frame([range(number, number + 1)], 0)
        server.receive_datagram(_raw_packet(client, frame), CLIENT_ADDR, 2.0 + rtt)
        states.append(_recovery(server, lost))
    assert ack_calls.acks == 1
    assert states[0] == states[1]
