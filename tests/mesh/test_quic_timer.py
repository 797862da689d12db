"""The connection's timer computed directly (mesh._quicshim.MeshQuicConnection.get_timer):
always aioquic's own value, cached or not."""

from __future__ import annotations

import random
import ssl
from collections import Counter
from typing import Any

import pytest
from aioquic import tls
from aioquic.quic import events as qe
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from mesh import _quicshim
from mesh._quicshim import MeshQuicConnection
from mesh.certs import ALPN, make_certificate
from protocol.crypto import Identity

CLIENT_ADDR = ("127.0.0.1", 1)
SERVER_ADDR = ("127.0.0.1", 2)
REBOUND_ADDR = ("127.0.0.1", 3)  # the client behind a NAT that rebinds
IDENTITY = Identity.generate()
IDLE_TIMEOUT = 10.0

_AIOQUIC_GET_TIMER = QuicConnection.get_timer
_AIOQUIC_IDLE_TIMEOUT = QuicConnection._idle_timeout


def _pair(congestion: str, seen: Counter[str]) -> tuple[MeshQuicConnection, MeshQuicConnection]:
    """An established client/server pair (handshake events drained), ACK delay tuned as the
    mesh tunes it; the timer is read before, during and after the handshake."""

    def config(is_client: bool) -> QuicConfiguration:
        return QuicConfiguration(
            is_client=is_client,
            alpn_protocols=[ALPN],
            verify_mode=ssl.CERT_NONE,
            max_datagram_frame_size=65536,
            idle_timeout=IDLE_TIMEOUT,
            congestion_control_algorithm=congestion,
        )

    server_config = config(False)
    server_config.certificate = make_certificate(IDENTITY.signing_key, common_name="s")
    server_config.private_key = IDENTITY.signing_key
    client = MeshQuicConnection(configuration=config(True))
    assert client.get_timer() is None  # before connect (aioquic's raises)
    client.connect(SERVER_ADDR, now=0.0)
    server = MeshQuicConnection(
        configuration=server_config,
        original_destination_connection_id=client.original_destination_connection_id,
    )
    for now in (0.0, 0.0, 0.0, 0.0, 0.05, 0.1, 0.15):
        for src, dst, addr in ((client, server, CLIENT_ADDR), (server, client, SERVER_ADDR)):
            for data, _ in src.datagrams_to_send(now=now):
                dst.receive_datagram(data, addr, now=now)
                _check(dst, seen)
            _check(src, seen)
    for conn in (client, server):
        assert any(isinstance(e, qe.HandshakeCompleted) for e in iter(conn.next_event, None))
        _quicshim.tune_ack_delay(conn, 0.02)
    return client, server


def _source(conn: QuicConnection) -> str:
    """Which of the steady state's deadlines the timer is (read after aioquic's get_timer,
    which stored the loss detection time)."""
    space = conn._spaces[tls.Epoch.ONE_RTT]
    loss_at = conn._loss_at
    candidates = [
        ("pacing", conn._pacing_at),
        ("pto" if space.loss_time is None else "loss time", loss_at),
        ("ack", space.ack_at),
        ("idle", conn._close_at),
    ]
    return min(((at, name) for name, at in candidates if at is not None))[1]


def _check(conn: MeshQuicConnection, seen: Counter[str]) -> None:
    """The connection's timer (cached or computed directly) and its idle timeout are
    aioquic's, and so is the loss detection time ``handle_timer`` will act on."""
    if conn._close_at is None:
        return  # before connect, or after the end: aioquic has no timer to compare
    direct = conn._mesh_timer_spaces is conn._loss.spaces
    cached = conn._mesh_timer_valid
    got = conn.get_timer()
    loss_at = conn._loss_at
    want = _AIOQUIC_GET_TIMER(conn)  # also recomputes conn._loss_at
    assert got == want, (got, want)
    assert loss_at == conn._loss_at, (loss_at, conn._loss_at)
    assert conn._idle_timeout() == _AIOQUIC_IDLE_TIMEOUT(conn)
    state = conn._state.name
    if state != "CONNECTED":
        seen[f"state {state}"] += 1
    elif not conn._network_paths[0].is_validated:
        seen["path being validated"] += 1
    elif not direct:
        seen["handshake"] += 1
    else:
        # computed directly: only once the connection is established for good
        loss = conn._loss
        assert loss.handshake_confirmed and loss.peer_completed_address_validation
        assert loss._rtt_initialized
        assert [s.is_application_data for s in loss.spaces if not s.discarded] == [True]
        seen["cached" if cached else "direct"] += 1
        seen[_source(conn)] += 1
        seen[f"pto count {min(conn._loss._pto_count, 3)}"] += 1


class _Net:
    """Both directions of a pair: packets lost, reordered, duplicated, or cut for a while."""

    def __init__(
        self, client: MeshQuicConnection, server: MeshQuicConnection, seen: Counter[str]
    ) -> None:
        self.rng = random.Random(16)
        self.client, self.server = client, server
        self.addr = {id(client): CLIENT_ADDR, id(server): SERVER_ADDR}
        self.held: list[tuple[float, MeshQuicConnection, bytes, Any]] = []
        self.blackout = False
        self.seen = seen
        self.events: list[qe.QuicEvent] = []

    def flush(self, src: MeshQuicConnection, now: float) -> None:
        dst = self.server if src is self.client else self.client
        for data, _addr in src.datagrams_to_send(now=now):
            fate = self.rng.random()
            if self.blackout or fate < 0.05:
                continue
            delay = 0.002 if fate > 0.15 else self.rng.uniform(0.0, 0.02)  # reordered
            copies = 2 if fate < 0.07 else 1
            for _ in range(copies):
                self.held.append((now + delay, dst, data, self.addr[id(src)]))
        _check(src, self.seen)

    def deliver(self, now: float) -> None:
        due = sorted((h for h in self.held if h[0] <= now), key=lambda h: h[0])
        self.held = [h for h in self.held if h[0] > now]
        for _at, dst, data, addr in due:
            dst.receive_datagram(data, addr, now=now)
            self.events.extend(iter(dst.next_event, None))
            _check(dst, self.seen)

    def timers(self, now: float) -> None:
        for conn in (self.client, self.server):
            _check(conn, self.seen)
            timer = conn.get_timer()
            if timer is not None and timer <= now:
                conn.handle_timer(now)
                _check(conn, self.seen)
                self.flush(conn, now)


@pytest.mark.parametrize("ending", ["idle", "close"])
@pytest.mark.parametrize("congestion", ["reno", "cubic"])
def test_direct_timer_is_aioquics(
    congestion: str, ending: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over a seeded script of movement DATAGRAMs both ways (lost, reordered, duplicated;
    ACKs delayed and piggybacked; bursts that the pacer spreads; stream data and pings;
    a NAT rebinding; a blackout that backs the PTO off; a quiet spell; then silence until
    the idle timeout ends both sides, or a close and its closing and draining periods),
    the timer read after every received datagram, every flush and every timer equals
    aioquic's ``get_timer`` on the same connection, with the same loss detection time
    stored, and the idle timeout is aioquic's; the direct computation served most reads,
    every deadline was the timer at least once, aioquic's chain ran only where the direct
    computation does not apply."""
    aioquic_reads: list[str] = []

    def counted(self: QuicConnection) -> float | None:
        # the fallback: only where the direct computation's conditions do not hold
        assert isinstance(self, MeshQuicConnection)
        paths = self._network_paths
        steady = self._mesh_timer_spaces is self._loss.spaces
        assert not steady or self._state.name != "CONNECTED" or not paths[0].is_validated
        aioquic_reads.append(self._state.name)
        return _AIOQUIC_GET_TIMER(self)

    seen: Counter[str] = Counter()
    client, server = _pair(congestion, seen)
    monkeypatch.setattr(QuicConnection, "get_timer", counted)
    net = _Net(client, server, seen)
    rng = net.rng
    stream = client.get_next_available_stream_id()
    now = 1.0
    for step in range(3000):
        now = 1.0 + step * 0.004
        if step == 800:
            net.addr[id(client)] = REBOUND_ADDR
        net.blackout = 1500 <= step < 2200  # 2.8 s: the PTO backs off a few times
        quiet = 2400 <= step < 2700  # nothing to send: the idle deadline is the timer
        net.deliver(now)
        for src in (client, server):
            if not quiet and rng.random() < 0.6:
                for _ in range(rng.choice((1, 1, 1, 1, 6))):  # bursts: paced
                    src.send_datagram_frame(b"m" * rng.choice((40, 90, 400, 1000)))
                    _check(src, net.seen)
            if not quiet and rng.random() < 0.01:
                src.send_stream_data(stream, b"s" * rng.randrange(1, 3000))
            if not quiet and rng.random() < 0.005:
                src.send_ping(step)
            if rng.random() < 0.3:
                _quicshim.piggyback_ack(src, now, min_age=0.008)
                _check(src, net.seen)
            net.flush(src, now)
        net.timers(now)
    if ending == "close":
        client.close(error_code=0, reason_phrase="bye")
        _check(client, seen)
        net.flush(client, now)
    # silence: only the timers run, until the idle timeout (or the close) ends both sides
    while (timers := [t for c in (client, server) if (t := c.get_timer()) is not None]) and (
        now < 100.0
    ):
        now = max(now, min(timers) + 1e-6)
        net.deliver(now)
        net.timers(now)
    assert client._state.name == server._state.name == "TERMINATED", seen
    if ending == "idle":
        assert not any(isinstance(e, qe.ConnectionTerminated) for e in net.events)
        for conn in (client, server):
            events = list(iter(conn.next_event, None))
            (end,) = [e for e in events if isinstance(e, qe.ConnectionTerminated)]
            assert end.reason_phrase == "Idle timeout"
    else:
        assert seen["state CLOSING"] > 0 and seen["state DRAINING"] > 0, seen
    for case in ("direct", "cached", "handshake", "path being validated"):
        assert seen[case] > 0, (case, seen)
    for source in ("idle", "ack", "pto", "loss time", "pacing"):
        assert seen[source] > 0, (source, seen)
    for backoff in ("pto count 0", "pto count 1", "pto count 2", "pto count 3"):
        assert seen[backoff] > 0, (backoff, seen)
    assert seen["direct"] > 3000, seen
    assert "CONNECTED" in aioquic_reads  # the handshake, the path being validated


def test_direct_timer_over_random_states() -> None:
    """The direct computation against aioquic's on an established connection whose every
    input is drawn at random (deadlines, RTT estimates with the granularity's floor and a
    tie with it, PTO backoff, packets in flight, both sides' idle timeouts, so three PTOs
    sometimes exceed them): the same timer, loss detection time and idle timeout."""
    seen: Counter[str] = Counter()
    client, server = _pair("reno", seen)
    rng = random.Random(16)
    for conn in (client, server):
        conn.get_timer()
        assert conn._mesh_timer_spaces is conn._loss.spaces  # established: computed directly
    for _ in range(4000):
        conn = rng.choice((client, server))
        loss, space = conn._loss, conn._spaces[tls.Epoch.ONE_RTT]
        conn._close_at = rng.uniform(1.0, 20.0)
        conn._pacing_at = rng.choice((None, rng.uniform(1.0, 20.0)))
        space.ack_at = rng.choice((None, rng.uniform(1.0, 20.0)))
        space.loss_time = rng.choice((None, None, None, rng.uniform(1.0, 20.0)))
        space.ack_eliciting_in_flight = rng.choice((0, 1, 1, 5))
        loss._pto_count = rng.randrange(8)
        loss._rtt_smoothed = rng.uniform(0.0001, 3.0)
        loss._rtt_variance = rng.choice((0.0, 0.00025, 0.0001, rng.uniform(0.0, 1.0)))
        loss.max_ack_delay = rng.choice((0.025, rng.uniform(0.0, 0.2)))
        loss._time_of_last_sent_ack_eliciting_packet = rng.uniform(0.0, 10.0)
        conn._remote_max_idle_timeout = rng.choice((None, rng.uniform(0.5, 30.0)))
        conn._configuration.idle_timeout = rng.choice((60.0, rng.uniform(0.5, 30.0)))
        conn._mesh_touch()
        _check(conn, seen)
        idle = conn._configuration.idle_timeout
        remote = conn._remote_max_idle_timeout
        if remote is not None and remote < idle:
            seen["remote idle timeout"] += 1
        if conn._idle_timeout() > min(idle, remote or idle):
            seen["three PTOs"] += 1
        if rng.random() < 0.2:  # no RTT measured yet: three PTOs of the initial RTT
            loss._rtt_initialized = False
            loss._rtt_initial = rng.uniform(0.01, 3.0)
            assert conn._idle_timeout() == _AIOQUIC_IDLE_TIMEOUT(conn)
            if conn._idle_timeout() > min(idle, remote or idle):
                seen["three initial PTOs"] += 1
            loss._rtt_initialized = True
    for case in ("pto", "loss time", "ack", "pacing", "idle", "remote idle timeout"):
        assert seen[case] > 100, (case, seen)
    assert seen["three PTOs"] > 100 and seen["three initial PTOs"] > 50, seen
    for backoff in ("pto count 0", "pto count 1", "pto count 2", "pto count 3"):
        assert seen[backoff] > 100, (backoff, seen)


def test_direct_timer_only_once_established() -> None:
    """The direct computation starts only once every condition it relies on holds (each
    read checks that it did), and on an established connection undoing any one of
    them (another space live, the handshake not confirmed, the address not validated by
    the peer, no RTT measured) would stop it."""
    seen: Counter[str] = Counter()
    client, server = _pair("reno", seen)
    assert seen["handshake"] > 0, seen
    for conn in (client, server):
        loss = conn._loss
        space = conn._spaces[tls.Epoch.ONE_RTT]
        assert _quicshim._steady_timer_space(conn) is space
        for obj, name, undone in (
            (conn._spaces[tls.Epoch.HANDSHAKE], "discarded", False),
            (conn._spaces[tls.Epoch.INITIAL], "discarded", False),
            (loss, "handshake_confirmed", False),
            (loss, "peer_completed_address_validation", False),
            (loss, "_rtt_initialized", False),
        ):
            setattr(obj, name, undone)
            assert _quicshim._steady_timer_space(conn) is None, name
            setattr(obj, name, not undone)
        assert _quicshim._steady_timer_space(conn) is space
