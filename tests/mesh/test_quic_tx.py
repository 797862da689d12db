"""The movement packet written directly (mesh._quic_tx): byte for byte aioquic's own packet."""

from __future__ import annotations

import copy
import copyreg
import random
import ssl
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from aioquic import tls
from aioquic._buffer import Buffer
from aioquic._crypto import AEAD, HeaderProtection
from aioquic.quic import events as qe
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet_builder import QuicSentPacket

from mesh import _quicshim
from mesh._quic_tx import DatagramPacketWriter
from mesh.certs import ALPN, make_certificate
from protocol.crypto import Identity
from protocol.messages.base import MessageType
from tests.inbox import Inbox

from .conftest import NodeFactory, ticket_of
from .test_quic_ack import _scripted_trace

CLIENT_ADDR = ("127.0.0.1", 1)
SERVER_ADDR = ("127.0.0.1", 2)


def _pair(
    congestion: str, cls: type[QuicConnection] = QuicConnection
) -> tuple[QuicConnection, QuicConnection]:
    """A client and a server of ``cls`` (default aioquic's own class), handshake done."""
    identity = Identity.generate()
    configs = []
    for is_client in (True, False):
        config = QuicConfiguration(
            is_client=is_client,
            alpn_protocols=[ALPN],
            verify_mode=ssl.CERT_NONE,
            max_datagram_frame_size=65536,
            congestion_control_algorithm=congestion,
        )
        configs.append(config)
    configs[1].certificate = make_certificate(identity.signing_key, common_name="s")
    configs[1].private_key = identity.signing_key
    client = cls(configuration=configs[0])
    client.connect(SERVER_ADDR, now=0.0)
    server = cls(
        configuration=configs[1],
        original_destination_connection_id=client.original_destination_connection_id,
    )
    for now in (0.0, 0.0, 0.0, 0.0, 0.05, 0.1, 0.15):
        for src, dst, addr in ((client, server, CLIENT_ADDR), (server, client, SERVER_ADDR)):
            for data, _ in src.datagrams_to_send(now=now):
                dst.receive_datagram(data, addr, now=now)
    for conn in (client, server):
        assert any(isinstance(e, qe.HandshakeCompleted) for e in iter(conn.next_event, None))
        _quicshim.tune_ack_delay(conn, 0.02)
    return client, server


@pytest.fixture
def copyable_connections(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Let ``copy.deepcopy`` copy an established QuicConnection: its AEAD and header
    protection keys are shared (stateless per packet), its empty CRYPTO receive buffers
    made anew (``_twin`` shares the TLS context, unused after the handshake)."""

    def keep(self: object, memo: object) -> object:
        return self

    def empty_buffer(buf: Buffer) -> tuple[type[Buffer], tuple[int]]:
        assert buf.tell() == 0
        return Buffer, (buf.capacity,)

    monkeypatch.setattr(AEAD, "__deepcopy__", keep, raising=False)
    monkeypatch.setattr(HeaderProtection, "__deepcopy__", keep, raising=False)
    copyreg.pickle(Buffer, empty_buffer)
    yield
    copyreg.dispatch_table.pop(Buffer, None)


def _twin(conn: QuicConnection) -> QuicConnection:
    memo: dict[int, object] = {id(conn.tls): conn.tls}
    writer = getattr(conn, "_mesh_tx", None)
    if writer is not None:  # a MeshQuicConnection's packet writer: its scratch buffer
        memo[id(writer._buffer)] = Buffer(capacity=writer._buffer.capacity)
        memo[id(writer._header_format)] = writer._header_format  # immutable
    twin: QuicConnection = copy.deepcopy(conn, memo)
    return twin


def _args(args: Any) -> Any:
    """A delivery handler's arguments, comparable across a connection and its twin."""
    if isinstance(args, tuple):
        return tuple(_args(a) for a in args)
    return args if isinstance(args, int | bytes) else type(args).__name__


def _packet(packet: QuicSentPacket) -> tuple[object, ...]:
    return (
        packet.epoch,
        packet.packet_type,
        packet.packet_number,
        packet.in_flight,
        packet.is_ack_eliciting,
        packet.is_crypto_packet,
        packet.sent_time,
        packet.sent_bytes,
        [(handler.__name__, _args(args)) for handler, args in packet.delivery_handlers],
        packet.quic_logger_frames,
    )


def _scalars(obj: object) -> dict[str, object]:
    return {k: v for k, v in vars(obj).items() if isinstance(v, int | float | None)}


def _state(conn: QuicConnection) -> dict[str, object]:
    """Everything sending a packet may change: the connection's counters and timers, the
    application space (ACK state, packets in flight) and the loss recovery, congestion
    controller and pacer."""
    space = conn._spaces[tls.Epoch.ONE_RTT]
    crypto = conn._cryptos[tls.Epoch.ONE_RTT]
    loss = conn._loss
    return {
        "packet_number": conn._packet_number,
        "pacing_at": conn._pacing_at,
        "close_at": conn._close_at,
        "ack_eliciting_sent": conn._ack_eliciting_sent_since_receipt,
        "paths": [(p.bytes_sent, p.bytes_received) for p in conn._network_paths],
        "pending": list(conn._datagrams_pending),
        "key": (crypto.key_phase, crypto._update_key_requested, crypto.send.secret),
        "ack_at": space.ack_at,
        "ack_queue": list(space.ack_queue),
        "space": _scalars(space),
        "sent": [_packet(p) for p in space.sent_packets.values()],
        "loss": _scalars(loss),
        "cc": _scalars(loss._cc),
        "pacer": _scalars(loss._pacer),
        "events": [type(e).__name__ for e in conn._events],
    }


class _Link:
    """Both directions of a pair: packets arrive at the next step, some are lost."""

    def __init__(self, client: QuicConnection, server: QuicConnection, seed: int) -> None:
        self.rng = random.Random(seed)
        self.client, self.server = client, server
        self.in_transit: list[tuple[QuicConnection, bytes, tuple[str, int]]] = []
        self.blackout: set[int] = set()  # ids of senders whose packets all vanish

    def send(self, src: QuicConnection, out: list[tuple[bytes, Any]]) -> None:
        dst, addr = (self.server, CLIENT_ADDR) if src is self.client else (self.client, SERVER_ADDR)
        for data, _ in out:
            if id(src) not in self.blackout and self.rng.random() > 0.1:
                self.in_transit.append((dst, data, addr))

    def deliver(self, now: float) -> None:
        arrived, self.in_transit = self.in_transit, []
        for dst, data, addr in arrived:
            dst.receive_datagram(data, addr, now=now)
            for _ in iter(dst.next_event, None):
                pass


@pytest.mark.usefixtures("copyable_connections")
@pytest.mark.parametrize("congestion", ["reno", "cubic"])
def test_writer_sends_aioquics_bytes_and_bookkeeping(congestion: str) -> None:
    """Over a seeded lossy script (ACKs due and not, ACK-only packets, ACK-of-ACK PINGs,
    pacing, a full congestion window during a blackout, bursts, oversized and empty
    DATAGRAMs, a key update), each flush the writer takes gives the very datagrams and
    state aioquic's ``datagrams_to_send`` gives a copy of the connection; each it
    declines changes nothing that aioquic's flush, run next, does not set the same way."""
    client, server = _pair(congestion)
    link = _Link(client, server, seed=16)
    writers = {
        id(c): DatagramPacketWriter(c, c._spaces[tls.Epoch.ONE_RTT]) for c in (client, server)
    }
    seen: Counter[str] = Counter()
    rng = link.rng
    for step in range(600):
        now = 1.0 + step * 0.004
        link.deliver(now)
        if step == 200:
            link.blackout = {id(client)}  # the client's window fills, then PTOs
        if step == 260:
            link.blackout = set()
        if step == 400:
            server.request_key_update()
        for src in (client, server):
            for _burst in range(rng.choice((1, 1, 1, 1, 1, 3))):
                for _ in range(rng.choice((0, 0, 1, 1, 1, 2))):
                    size = rng.choice((0, 1, 120, 700, *[43] * 16))
                    src.send_datagram_frame(bytes([step % 256]) * size)
                if rng.random() < 0.3:
                    _quicshim.piggyback_ack(src, now)
                _flush(src, writers[id(src)], now, link, seen)
            timer = src.get_timer()
            if timer is not None and timer <= now:
                src.handle_timer(now)
                _flush(src, writers[id(src)], now, link, seen)
    # every case met at least once, most flushes by the writer
    assert seen["written"] > 500, seen
    cases = ("ack", "no ack", "ack only", "ack-of-ack ping", "paced", "nothing", "declined")
    for case in (*cases, "key update"):
        assert seen[case] > 0, (case, seen)


def _flush(
    src: QuicConnection,
    writer: DatagramPacketWriter,
    now: float,
    link: _Link,
    seen: Counter[str],
) -> None:
    if _quicshim._quiet_but_datagrams(src) is None:
        link.send(src, src.datagrams_to_send(now=now))
        return
    twin = _twin(src)
    space = src._spaces[tls.Epoch.ONE_RTT]
    ack_due = space.ack_at is not None and space.ack_at <= now
    key_update = src._cryptos[tls.Epoch.ONE_RTT]._update_key_requested
    datagrams = bool(src._datagrams_pending)
    before = _state(src)
    out = writer.write(now)
    expected = QuicConnection.datagrams_to_send(twin, now=now)
    if out is None:
        seen["declined"] += 1
        after = _state(src)
        for key in ("pacing_at", "pacer"):  # what aioquic's flush sets first, the same way
            del before[key], after[key]
        assert after == before
        out = src.datagrams_to_send(now=now)
    elif out:
        seen["written"] += 1
        seen["ack" if ack_due else "no ack"] += 1
        seen["ack only"] += not datagrams
        seen["key update"] += key_update
        packet = src._spaces[tls.Epoch.ONE_RTT].sent_packets[src._packet_number - 1]
        seen["ack-of-ack ping"] += len(packet.delivery_handlers) == 2
    else:
        seen["paced" if datagrams or ack_due else "nothing"] += 1
    assert out == expected
    assert _state(src) == _state(twin)
    assert src.get_timer() == twin.get_timer()
    link.send(src, out)


@pytest.mark.usefixtures("copyable_connections")
@pytest.mark.parametrize("congestion", ["reno", "cubic"])
def test_mesh_connection_paces_bursts_as_aioquic(congestion: str) -> None:
    """A MeshQuicConnection pair over a seeded lossy script of bursts (up to eight
    DATAGRAMs a step, several packets a flush, the pacer holding some back) and flushes
    between steps with no call in between (an idle flush at a later time releases what
    pacing held: its bucket refills continuously, the pacing time is only the latest a
    held packet leaves): every flush, whichever path answers it (the writer, aioquic's
    builder, the idle check), gives the very datagrams and state aioquic's own
    ``datagrams_to_send`` gives a copy of the connection, and the same timer."""
    client, server = _pair(congestion, _quicshim.MeshQuicConnection)
    link = _Link(client, server, seed=1616)
    seen: Counter[str] = Counter()
    rng = link.rng
    for step in range(300):
        now = 1.0 + step * 0.01
        link.deliver(now)
        if step == 150:
            link.blackout = {id(server)}  # the server's window fills, then PTOs
        if step == 190:
            link.blackout = set()
        for src in (client, server):
            for _ in range(rng.choice((0, 0, 1, 2, 4, 8))):
                src.send_datagram_frame(b"b" * rng.randrange(20, 1000))
            if rng.random() < 0.3:
                _quicshim.piggyback_ack(src, now)
            for offset in (0.0, 0.0005, 0.001, 0.002, 0.004, 0.008):
                at = now + offset
                timer = src.get_timer()
                if timer is not None and timer <= at:
                    src.handle_timer(at)
                _compare_flush(src, at, link, seen)
    cases = ("writer", "aioquic", "idle", "idle, paced", "idle, pacing released")
    for case in cases:
        assert seen[case] > 10, (case, seen)


@pytest.mark.parametrize("congestion", ["reno", "cubic"])
def test_mesh_connection_follows_aioquic_through_lossy_bursts(congestion: str) -> None:
    """The whole MeshQuicConnection (receive and ACK fast paths, writer, idle check,
    direct timer) against plain aioquic over test_quic_ack's seeded script (bursts of up
    to six DATAGRAMs a step, losses, reordering, duplicates, a blackout): the same
    events, recovery state (pacer included), timer and datagram sizes after every step."""
    plain = _scripted_trace(QuicConnection, congestion)
    mesh = _scripted_trace(_quicshim.MeshQuicConnection, congestion)
    for step, (got, want) in enumerate(zip(mesh, plain, strict=True)):
        assert got == want, f"trace item {step}"


def _compare_flush(src: QuicConnection, now: float, link: _Link, seen: Counter[str]) -> None:
    """One flush of a MeshQuicConnection against aioquic's flush of its copy."""
    assert isinstance(src, _quicshim.MeshQuicConnection)
    twin = _twin(src)
    idle = src._mesh_clean  # no call since the last flush
    paced = src._pacing_at is not None and src._pacing_at > now
    pending = bool(src._datagrams_pending)
    sent = src._packet_number
    written = src._mesh_tx
    out = src.datagrams_to_send(now=now)
    expected = QuicConnection.datagrams_to_send(twin, now=now)
    assert out == expected
    assert _state(src) == _state(twin)
    assert src.get_timer() == QuicConnection.get_timer(twin)
    if idle:
        released = paced and pending and out
        seen["idle, pacing released" if released else "idle, paced" if paced else "idle"] += 1
    elif out:
        by_writer = written is not None and written is src._mesh_tx and len(out) == 1
        seen["writer" if by_writer and src._packet_number == sent + 1 else "aioquic"] += 1
    link.send(src, out)


async def test_movement_between_two_nodes_goes_through_the_writer(
    make_node: NodeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Position updates between two real PeerNodes over QUIC leave in packets the writer
    wrote, and arrive in order."""
    written = [0]
    write = DatagramPacketWriter.write

    def counting(self: DatagramPacketWriter, now: float) -> list[tuple[bytes, Any]] | None:
        out = write(self, now)
        written[0] += bool(out)
        return out

    monkeypatch.setattr(DatagramPacketWriter, "write", counting)
    runner = await make_node(1, "Runner")
    watcher = await make_node(2, "Watcher")
    inbox = Inbox()
    watcher.register_handler(MessageType.POSITION_UPDATE, inbox)
    await runner.connect(ticket_of(watcher), watcher.endpoint)
    for i in range(30):
        update = runner.send_position_update((float(i), 0.0, 1.0), location_id=3)
        await inbox.wait_for(i + 1)
        assert inbox.items[-1].seq == update.seq
    assert [u.position.x for u in inbox.items] == [float(i) for i in range(30)]
    assert written[0] >= 30


def test_writer_gives_way_to_qlog() -> None:
    """A connection writing a qlog keeps aioquic's builder (it logs every frame)."""
    client, server = _pair("reno")
    client._quic_logger = object()  # type: ignore[assignment]
    client.send_datagram_frame(b"x")
    writer = DatagramPacketWriter(client, client._spaces[tls.Epoch.ONE_RTT])
    assert writer.write(2.0) is None
    assert list(client._datagrams_pending) == [b"x"]


@pytest.mark.usefixtures("copyable_connections")
def test_writer_follows_a_peer_connection_id_of_another_length() -> None:
    """The short header takes the length of the peer's current connection ID (a
    NEW_CONNECTION_ID may carry 1 to 20 bytes, whatever the first one had): the writer's
    packet stays aioquic's, byte for byte, as the ID's length changes."""
    client, _server = _pair("reno")
    writer = DatagramPacketWriter(client, client._spaces[tls.Epoch.ONE_RTT])
    for step, length in enumerate((8, 12, 1, 20, 8)):
        client._peer_cid.cid = bytes(range(length))
        client.send_datagram_frame(b"m" * 40)
        now = 1.0 + step * 0.1
        twin = _twin(client)
        out = writer.write(now)
        assert out
        assert out == QuicConnection.datagrams_to_send(twin, now=now)
        assert _state(client) == _state(twin)
