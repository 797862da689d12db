"""The aioquic shim: every private attribute the mesh touches, pinned on aioquic 1.7.2."""

from __future__ import annotations

import ssl
from collections import Counter

import pytest
from aioquic import tls
from aioquic.quic import events as qe
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from mesh import _quicshim
from mesh.certs import ALPN, make_certificate
from protocol.crypto import Identity
from protocol.errors import ErrorCode, MeshConfigError, MeshError


def _config(is_client: bool, *, datagrams: bool = True) -> QuicConfiguration:
    return QuicConfiguration(
        is_client=is_client,
        alpn_protocols=[ALPN],
        verify_mode=ssl.CERT_NONE,
        max_datagram_frame_size=65536 if datagrams else None,
    )


CLIENT_ADDR = ("127.0.0.1", 1)
SERVER_ADDR = ("127.0.0.1", 2)


def _exchange(client: QuicConnection, server: QuicConnection, now: float) -> int:
    """Deliver everything both sides want to send (a client only accepts its server's address)."""
    sent = 0
    for src, dst, src_addr in ((client, server, CLIENT_ADDR), (server, client, SERVER_ADDR)):
        for data, _addr in src.datagrams_to_send(now=now):
            dst.receive_datagram(data, src_addr, now=now)
            sent += 1
    return sent


def pair(
    *, server_datagrams: bool = True, cls: type[QuicConnection] = QuicConnection
) -> tuple[QuicConnection, QuicConnection, Identity]:
    identity = Identity.generate()
    server_config = _config(False, datagrams=server_datagrams)
    server_config.certificate = make_certificate(identity.signing_key, common_name="s")
    server_config.private_key = identity.signing_key
    client = cls(configuration=_config(True))
    client.connect(SERVER_ADDR, now=0.0)
    server = cls(
        configuration=server_config,
        original_destination_connection_id=client.original_destination_connection_id,
    )
    for _ in range(10):
        if not _exchange(client, server, 0.0):
            break
    for side in (client, server):
        events = list(iter(side.next_event, None))
        assert any(isinstance(e, qe.HandshakeCompleted) for e in events)
    return client, server, identity


def test_version_is_pinned() -> None:
    _quicshim.check_aioquic_version()  # the installed one
    with pytest.raises(MeshError, match="1.7.2") as info:  # one except clause for the mesh
        _quicshim.check_aioquic_version("1.8.0")
    assert isinstance(info.value, MeshConfigError)
    assert info.value.code == ErrorCode.BAD_REQUEST


def test_datagram_queue_count_and_trim() -> None:
    client, _server, _ = pair()
    assert _quicshim.pending_datagram_count(client) == 0
    for i in range(5):
        client.send_datagram_frame(bytes([i]) * 10)
    assert _quicshim.pending_datagram_count(client) == 5
    assert _quicshim.trim_pending_datagrams(client, 2) == 3
    assert _quicshim.pending_datagram_count(client) == 2
    assert _quicshim.trim_pending_datagrams(client, 2) == 0
    assert _quicshim.trim_pending_datagrams(client, 1) == 1  # one over the bound
    assert _quicshim.trim_pending_datagrams(client, -1) == 1  # a negative bound keeps none
    assert _quicshim.pending_datagram_count(client) == 0
    client.send_datagram_frame(b"last")
    assert client.datagrams_to_send(now=1.0)
    assert _quicshim.pending_datagram_count(client) == 0


def test_remote_max_datagram_frame_size() -> None:
    client, server, _ = pair()
    assert _quicshim.remote_max_datagram_frame_size(client) == 65536
    assert _quicshim.remote_max_datagram_frame_size(server) == 65536
    client, _server, _ = pair(server_datagrams=False)
    assert _quicshim.remote_max_datagram_frame_size(client) is None


def test_peer_certificate_key_is_the_server_identity() -> None:
    client, server, identity = pair()
    assert _quicshim.peer_certificate_ed25519(client) == identity.public_key
    assert _quicshim.peer_certificate_ed25519(server) is None


def test_ack_delay_tuning_and_piggyback() -> None:
    client, server, _ = pair()
    # default: an ACK for a lone datagram is due about 1 ms later
    client.send_datagram_frame(b"x")
    _exchange(client, server, 1.0)
    timer = server.get_timer()
    assert timer is not None and timer <= 1.0 + 0.0011
    _exchange(client, server, 1.01)
    # tuned: the ACK waits for the tick, unless a packet leaves anyway
    _quicshim.tune_ack_delay(server, 0.0625)
    with pytest.raises(ValueError):
        _quicshim.tune_ack_delay(server, 0)
    client.send_datagram_frame(b"y")
    for data, _ in client.datagrams_to_send(now=2.0):
        server.receive_datagram(data, CLIENT_ADDR, now=2.0)
    assert server.datagrams_to_send(now=2.001) == []
    assert _quicshim.piggyback_ack(server, 2.001)
    assert len(server.datagrams_to_send(now=2.001)) == 1
    assert not _quicshim.piggyback_ack(server, 2.002)


def _scripted_trace(cls: type[QuicConnection]) -> list[object]:
    """Packets sent and timers seen by a pair over a fixed script of sends, timers and idle
    flushes (only sizes and times: the same for any connection class that sends the same)."""
    client, server, _ = pair(cls=cls)
    for conn in (client, server):
        _quicshim.tune_ack_delay(conn, 0.05)
    stream = client.get_next_available_stream_id()
    addr = {id(client): CLIENT_ADDR, id(server): SERVER_ADDR}
    trace: list[object] = []
    sent = 0
    for i in range(300):
        now = 1.0 + i * 0.007
        if i % 3 == 0:
            client.send_datagram_frame(b"m" * 40)
        if i % 5 == 0:
            server.send_datagram_frame(b"n" * 40)
        if i % 7 == 0:
            _quicshim.piggyback_ack(server, now)
        if i % 37 == 0:
            client.send_stream_data(stream, b"hello")
        if i % 61 == 0:
            client.send_ping(i)
        # each event that must end a quiet connection's remembered answer, among movement
        if i == 40:
            server.send_stream_data(stream, b"reply" * 100, end_stream=True)
        if i == 90:
            client.change_connection_id()
        if i == 130:
            server.request_key_update()
        if i == 170:
            side = client.get_next_available_stream_id()
            client.send_stream_data(side, b"x" * 3000)
            client.reset_stream(side, 1)
        if i == 210:
            client.stop_stream(stream, 2)
        if i == 299:
            server.close(error_code=0)
        for src, dst in ((client, server), (server, client)):
            for _ in range(2):  # the second flush finds nothing new
                out = src.datagrams_to_send(now=now)
                trace.append(len(out))
                for data, _addr in out:
                    sent += 1
                    if sent % 13 == 0:
                        continue  # lost: loss detection re-queues what it carried
                    dst.receive_datagram(data, addr[id(src)], now=now)
            timer = src.get_timer()
            trace.append(timer)
            if timer is not None and timer <= now:
                src.handle_timer(now)
    return trace


def _count_aioquic_flushes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """From now on, count calls of aioquic's own ``datagrams_to_send`` (in the list's one item)."""
    calls = [0]
    original = QuicConnection.datagrams_to_send

    def counting(self: QuicConnection, now: float) -> list[tuple[bytes, object]]:
        calls[0] += 1
        return original(self, now)

    monkeypatch.setattr(QuicConnection, "datagrams_to_send", counting)
    return calls


def test_mesh_connection_sends_exactly_what_aioquic_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = _scripted_trace(QuicConnection)
    calls = _count_aioquic_flushes(monkeypatch)
    mesh = _scripted_trace(_quicshim.MeshQuicConnection)
    assert mesh == plain
    assert sum(isinstance(n, int) and n > 0 for n in plain) > 100  # traffic did flow
    assert calls[0] < 0.6 * 4 * 300  # idle flushes did not reach aioquic


def test_movement_datagrams_skip_aioquic_frame_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """DATAGRAMs (with the ACK they carry) of an established connection are written without
    aioquic's pass over every other frame source, and arrive, acknowledged, in order."""
    client, server, _ = pair(cls=_quicshim.MeshQuicConnection)
    for conn in (client, server):
        _quicshim.tune_ack_delay(conn, 0.05)
    for settle in (0.5, 0.6, 0.7):  # delayed ACKs of the handshake go out
        _exchange(client, server, settle)
    calls = _count_aioquic_flushes(monkeypatch)
    got: dict[int, list[bytes]] = {id(client): [], id(server): []}
    for i in range(40):
        now = 1.0 + i * 0.02
        client.send_datagram_frame(b"c%d" % i)
        server.send_datagram_frame(b"s%d" % i)
        for conn in (client, server):
            _quicshim.piggyback_ack(conn, now)
        assert _exchange(client, server, now) == 2  # one packet each way, ACK inside
        for conn in (client, server):
            got[id(conn)] += [
                e.data
                for e in iter(conn.next_event, None)
                if isinstance(e, qe.DatagramFrameReceived)
            ]
    assert calls[0] == 0
    assert got[id(server)] == [b"c%d" % i for i in range(40)]
    assert got[id(client)] == [b"s%d" % i for i in range(40)]
    for conn in (client, server):  # everything but the last packet acknowledged
        assert conn._loss.bytes_in_flight < 200


def test_mesh_connection_idle_flush_waits_for_its_timer() -> None:
    client, server, _ = pair(cls=_quicshim.MeshQuicConnection)
    for settle in (0.5, 0.6, 0.7):  # delayed ACKs of the handshake go out
        _exchange(client, server, settle)
    _quicshim.tune_ack_delay(server, 0.05)
    client.send_datagram_frame(b"x")
    for data, _ in client.datagrams_to_send(now=1.0):
        server.receive_datagram(data, CLIENT_ADDR, now=1.0)
    assert server.datagrams_to_send(now=1.0) == []  # the ACK waits for its delay
    timer = server.get_timer()
    assert timer is not None and 1.0 < timer <= 1.05
    assert server.datagrams_to_send(now=timer - 0.001) == []
    assert len(server.datagrams_to_send(now=timer)) == 1  # then it goes, with no other call


def test_mesh_connection_reports_when_it_may_have_something_to_send() -> None:
    client, server, _ = pair(cls=_quicshim.MeshQuicConnection)
    assert isinstance(client, _quicshim.MeshQuicConnection)
    touched: set[str] = set()
    client.watch(touched, "c")
    for settle in (0.5, 0.6, 0.7):
        _exchange(client, server, settle)
    touched.clear()
    assert client.datagrams_to_send(now=0.8) == [] and not touched
    client.send_datagram_frame(b"x")
    assert touched == {"c"}
    touched.clear()
    client.handle_timer(0.9)
    assert touched == {"c"}


@pytest.mark.parametrize("cls", [QuicConnection, _quicshim.MeshQuicConnection])
def test_nothing_to_send_is_never_wrong(cls: type[QuicConnection]) -> None:
    """Whenever ``has_nothing_to_send`` says so, aioquic's own flush sends nothing: over a
    seeded lossy exchange with datagrams, stream data (flow-control updates), short
    request streams (batched MAX_STREAMS updates), pings,
    piggybacked ACKs and loss timers, on plain aioquic connections and on the shim's
    (which remembers the answer between calls)."""
    import random

    rng = random.Random(7)
    client, server, _ = pair(cls=cls)
    for conn in (client, server):
        _quicshim.tune_ack_delay(conn, 0.05)
    stream = client.get_next_available_stream_id()
    addr = {id(client): CLIENT_ADDR, id(server): SERVER_ADDR}
    client.send_stream_data(stream, b"open")  # the next free id is another one now
    checked = quiet = batched = 0
    ended: set[int] = set()
    for i in range(3000):
        now = 1.0 + i * 0.003
        if rng.random() < 0.3:
            client.send_datagram_frame(b"m" * 40)
        if rng.random() < 0.3:
            server.send_datagram_frame(b"n" * 40)
        if rng.random() < 0.05:
            client.send_stream_data(stream, b"h" * rng.randrange(1, 3000))
        if rng.random() < 0.02:
            server.send_stream_data(stream, b"r" * rng.randrange(1, 500))
        if rng.random() < 0.01:
            client.send_ping(i)
        if rng.random() < 0.04:  # a short request stream: finished, it raises MAX_STREAMS
            client.send_stream_data(client.get_next_available_stream_id(), b"q", end_stream=True)
        for sid in [sid for sid in server._streams if sid != stream and sid not in ended]:
            ended.add(sid)
            server.send_stream_data(sid, b"a", end_stream=True)
        if rng.random() < 0.1:
            _quicshim.piggyback_ack(server, now)
        for src, dst in ((client, server), (server, client)):
            for data, _addr in src.datagrams_to_send(now=now):
                if rng.random() < 0.1:
                    continue  # lost
                dst.receive_datagram(data, addr[id(src)], now=now)
                list(iter(dst.next_event, None))
                checked += 1
                if _quicshim.has_nothing_to_send(dst, now):
                    quiet += 1
                    limit = dst._local_max_streams_bidi
                    batched += limit.value != limit.sent
                    assert QuicConnection.datagrams_to_send(dst, now=now) == []
            timer = src.get_timer()
            if timer is not None and timer <= now:
                src.handle_timer(now)
    assert checked > 1000 and quiet > checked // 4  # the shortcut was taken, often
    assert batched  # also while aioquic holds a MAX_STREAMS update back


def test_quiet_kept_across_a_received_packet_is_what_a_full_check_says() -> None:
    """A quiet connection (only DATAGRAMs may be pending) stays quiet across a received
    packet of DATAGRAM/ACK frames without the full check; whenever it does, the full check
    agrees. A seeded lossy exchange mixes in every event that must end it: stream data
    both ways (flow-control updates, FINs, streams finished by an ACK), resets,
    STOP_SENDING, pings, connection-ID changes, key updates, a new path, losses, timers."""
    import random

    rng = random.Random(11)
    client, server, _ = pair(cls=_quicshim.MeshQuicConnection)
    for conn in (client, server):
        _quicshim.tune_ack_delay(conn, 0.05)
    stream = client.get_next_available_stream_id()
    client.send_stream_data(stream, b"open")  # the next free id is another one now
    addr = {id(client): CLIENT_ADDR, id(server): SERVER_ADDR}
    kept = dropped = 0
    ended: set[int] = set()
    rebound = False
    for i in range(3000):
        now = 1.0 + i * 0.003
        if rng.random() < 0.4:
            client.send_datagram_frame(b"m" * 40)
        if rng.random() < 0.4:
            server.send_datagram_frame(b"n" * 40)
        if rng.random() < 0.02:
            client.send_stream_data(stream, b"h" * rng.randrange(1, 3000))
        if rng.random() < 0.01:
            server.send_stream_data(stream, b"r" * rng.randrange(1, 500))
        if rng.random() < 0.005:
            side = client.get_next_available_stream_id()
            client.send_stream_data(side, b"s" * 100, end_stream=rng.random() < 0.5)
            if rng.random() < 0.5:
                client.reset_stream(side, 1)
        if rng.random() < 0.003:
            sides = [sid for sid in server._streams if sid != stream]
            if sides:
                server.stop_stream(rng.choice(sides), 2)
        if rng.random() < 0.01:  # the server's FIN: a stream both ends finished
            sides = [sid for sid in server._streams if sid != stream and sid not in ended]
            if sides:
                ended.add(sides[0])
                server.send_stream_data(sides[0], b"bye", end_stream=True)
        if rng.random() < 0.005:
            client.send_ping(i)
        if rng.random() < 0.003:
            rng.choice((client, server)).change_connection_id()
        if rng.random() < 0.002:
            rng.choice((client, server)).request_key_update()
        if rng.random() < 0.1:
            _quicshim.piggyback_ack(server, now)
        for src, dst in ((client, server), (server, client)):
            for data, _addr in src.datagrams_to_send(now=now):
                if rng.random() < 0.05:
                    continue  # lost
                was_quiet = dst._mesh_quiet
                if not rebound and i > 300 and dst is server and was_quiet and dst._mesh_settled:
                    rebound = True
                    addr[id(client)] = ("127.0.0.1", 3)  # NAT rebinding: a new path
                dst.receive_datagram(data, addr[id(src)], now=now)
                list(iter(dst.next_event, None))
                if dst._mesh_quiet:
                    kept += was_quiet
                    dst._mesh_quiet = False  # ask the full check afresh
                    assert _quicshim._quiet_but_datagrams(dst) is not None
                elif was_quiet:
                    dropped += 1
            timer = src.get_timer()
            if timer is not None and timer <= now:
                src.handle_timer(now)
    assert kept > 500 and dropped > 20  # both ways were taken, often
    assert rebound


def test_received_datagram_does_not_flush_an_idle_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A movement DATAGRAM only schedules a delayed ACK: the flush after it stays in the shim."""
    client, server, _ = pair(cls=_quicshim.MeshQuicConnection)
    for settle in (0.5, 0.6, 0.7):
        _exchange(client, server, settle)
    _quicshim.tune_ack_delay(server, 0.05)
    assert server.datagrams_to_send(now=0.8) == []
    client.send_datagram_frame(b"x")
    packets = client.datagrams_to_send(now=1.0)
    calls = _count_aioquic_flushes(monkeypatch)
    for data, _ in packets:
        server.receive_datagram(data, CLIENT_ADDR, now=1.0)
    assert server.datagrams_to_send(now=1.0) == []
    assert calls == [0]
    assert len(server.datagrams_to_send(now=1.05)) == 1  # the delayed ACK, at its time
    assert calls == [0]  # the ACK is written by the shim too (mesh._quic_tx)


def test_probe_path_gets_a_ping_past_a_full_congestion_window() -> None:
    """A path gone silent keeps what it sent in flight: the window fills and a PING the
    core asks for would wait for aioquic's backed-off PTO; probe_path sends it now."""
    client, server, _ = pair()
    stream = client.get_next_available_stream_id()
    client.send_stream_data(stream, b"x" * 200_000)
    now = 1.0
    while client.datagrams_to_send(now=now):  # nothing delivered, nothing acknowledged
        now += 0.001
    client.send_ping(7)
    assert client.datagrams_to_send(now=now) == []  # the window is full
    _quicshim.probe_path(client)
    (probe,) = client.datagrams_to_send(now=now)
    server.receive_datagram(probe[0], CLIENT_ADDR, now=now)
    assert any(isinstance(e, qe.PingAcknowledged) for e in _events_after_ack(client, server, now))


def _events_after_ack(client: QuicConnection, server: QuicConnection, now: float) -> list[object]:
    for data, _addr in server.datagrams_to_send(now=now + 0.03):
        client.receive_datagram(data, SERVER_ADDR, now=now + 0.03)
    events: list[object] = []
    while (event := client.next_event()) is not None:
        events.append(event)
    return events


def _ack_only_unacknowledged(conn: QuicConnection) -> int:
    space = conn._spaces[tls.Epoch.ONE_RTT]
    return len(space.sent_packets) - space.ack_eliciting_in_flight


def test_a_peer_that_only_receives_keeps_few_unacknowledged_acks() -> None:
    """A side that only acknowledges (movement flows one way) has every 16th ACK carry a
    PING: the sender's ACK of it lets it forget its ACK-only packets, which nobody
    acknowledges otherwise (aioquic keeps them all: one more per ACK, for good)."""
    sender, receiver, _ = pair(cls=_quicshim.MeshQuicConnection)
    for conn in (sender, receiver):
        _quicshim.tune_ack_delay(conn, 0.005)
    peer = {id(sender): (receiver, CLIENT_ADDR), id(receiver): (sender, SERVER_ADDR)}
    kinds: Counter[str] = Counter()

    def flush(src: QuicConnection, now: float) -> None:
        dst, addr = peer[id(src)]
        first = src._packet_number
        for data, _addr in src.datagrams_to_send(now=now):
            dst.receive_datagram(data, addr, now=now)
        list(iter(dst.next_event, None))
        if src is receiver:
            sent = src._spaces[tls.Epoch.ONE_RTT].sent_packets
            for number in range(first, src._packet_number):
                kinds["ping" if sent[number].is_ack_eliciting else "ack only"] += 1

    worst = 0
    for step in range(600):
        now = 1.0 + step * 0.016
        sender.send_datagram_frame(b"m" * 43)
        flush(sender, now)
        flush(receiver, now)
        later = now + 0.006  # the receiver's ACK delay runs out before the next datagram
        for side in (receiver, sender):
            timer = side.get_timer()
            if timer is not None and timer <= later:
                side.handle_timer(later)
            flush(side, later)
        worst = max(worst, _ack_only_unacknowledged(receiver))
    assert kinds["ack only"] > 400, kinds  # the receiver sent hundreds of ACKs alone
    assert worst <= 17, worst  # ACK_ONLY_LIMIT, and the one that carried the PING
    assert kinds["ping"] >= kinds["ack only"] // _quicshim.ACK_ONLY_LIMIT - 1, kinds
    assert _ack_only_unacknowledged(sender) <= 1  # the sender's ACKs ride on its datagrams


def _movement_state(conn: _quicshim.MeshQuicConnection, touched: set[str]) -> tuple[object, ...]:
    """What a movement send may change on ``conn`` (and whether it touched ``touched``)."""
    space = conn._spaces[tls.Epoch.ONE_RTT]
    state = (
        list(conn._datagrams_pending),
        space.ack_at,
        conn._mesh_ack_largest,
        conn._mesh_ack_prompt,
        conn._mesh_clean,
        conn._mesh_timer_valid,
        conn._mesh_quiet,
        "link" in touched,
    )
    touched.clear()
    return state


def test_send_movement_is_send_trim_and_piggyback_in_one_call() -> None:
    """``send_movement`` leaves each connection as ``send_datagram_frame`` of each payload,
    ``trim_pending_datagrams`` and ``piggyback_ack`` do, one after the other: the same
    queue, ACK time, piggyback memory, touched flags and answer, call after call, over a
    script of sends (none to three payloads), flushes left out (the queue past its bound),
    stream data from the peer (an ACK prompt), ACK ages and predicted next sends."""
    pairs = []
    for _ in range(2):
        client, server, _ = pair(cls=_quicshim.MeshQuicConnection)
        assert isinstance(client, _quicshim.MeshQuicConnection)
        assert isinstance(server, _quicshim.MeshQuicConnection)
        for conn in (client, server):
            _quicshim.tune_ack_delay(conn, 0.05)
        touched: set[str] = set()
        client.watch(touched, "link")
        pairs.append((client, server, touched))
    stream = pairs[0][1].get_next_available_stream_id()
    answers: list[bool] = []
    for i in range(400):
        now = 1.0 + i * 0.009
        payloads = [bytes([i % 256, k]) * 30 for k in range(i % 4)]
        keep = 2 + i % 3
        min_age = (None, 0.0, 0.02, 0.04)[i % 4 if i % 11 else 1]
        next_send = None if i % 5 == 0 else now + 0.01 * (i % 9)
        states = []
        for n, (client, server, touched) in enumerate(pairs):
            if i % 13 == 0:
                server.send_stream_data(stream, b"whisper")  # the client's next ACK is prompt
            if i % 2 == 0:
                server.send_datagram_frame(b"s" * 20)
            for data, _addr in server.datagrams_to_send(now=now - 0.001):
                client.receive_datagram(data, SERVER_ADDR, now=now - 0.001)
            touched.clear()
            if n == 0:
                for payload in payloads:
                    client.send_datagram_frame(payload)
                _quicshim.trim_pending_datagrams(client, keep)
                answer = min_age is not None and _quicshim.piggyback_ack(
                    client, now, min_age, next_send
                )
            else:
                answer = client.send_movement(payloads, keep, now, min_age, next_send)
            states.append((answer, _movement_state(client, touched)))
            if i % 3 == 0:  # flushes left out in between: the queue grows past its bound
                for data, _addr in client.datagrams_to_send(now=now):
                    server.receive_datagram(data, CLIENT_ADDR, now=now)
                states.append(_movement_state(client, touched))
            states.append(client.get_timer())
        assert states[: len(states) // 2] == states[len(states) // 2 :], i
        answers.append(bool(states[0][0]))
    assert True in answers and False in answers  # both answers were compared
