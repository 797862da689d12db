"""The receive fast path (mesh/_quic_rx.py): the same connection state as plain aioquic."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import ssl
from typing import Any

import pytest
from aioquic import tls
from aioquic.quic import events as qe
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicPacketType
from aioquic.quic.packet_builder import QuicPacketBuilder

from mesh import _quic_rx, _quicshim
from mesh.certs import ALPN, make_certificate
from protocol.crypto import Identity
from protocol.messages.base import MessageType
from tests.inbox import Inbox
from tests.polling import eventually

from .conftest import NodeFactory, ticket_of

CLIENT_ADDR = ("127.0.0.1", 1)
SERVER_ADDR = ("127.0.0.1", 2)
REBOUND_ADDR = ("127.0.0.1", 3)  # the client behind a NAT that rebinds
IDENTITY = Identity.generate()
#: one certificate for every pair: a new one may be a byte longer (its random serial), which
#: changes the handshake's packet sizes, so the window the two pairs compared start with
CERTIFICATE = make_certificate(IDENTITY.signing_key, common_name="s")


def _pair(
    cls: type[QuicConnection], congestion: str = "reno"
) -> tuple[QuicConnection, QuicConnection]:
    """An established client/server pair (handshake events drained), ACK delay tuned as the
    mesh tunes it, ``congestion`` its congestion control algorithm."""

    def config(is_client: bool) -> QuicConfiguration:
        return QuicConfiguration(
            is_client=is_client,
            alpn_protocols=[ALPN],
            verify_mode=ssl.CERT_NONE,
            max_datagram_frame_size=65536,
            congestion_control_algorithm=congestion,
        )

    server_config = config(False)
    server_config.certificate = CERTIFICATE
    server_config.private_key = IDENTITY.signing_key
    client = cls(configuration=config(True))
    client.connect(SERVER_ADDR, now=0.0)
    server = cls(
        configuration=server_config,
        original_destination_connection_id=client.original_destination_connection_id,
    )
    for _ in range(10):
        moved = False
        for src, dst, addr in ((client, server, CLIENT_ADDR), (server, client, SERVER_ADDR)):
            for data, _addr in src.datagrams_to_send(now=0.0):
                dst.receive_datagram(data, addr, now=0.0)
                moved = True
        if not moved:
            break
    for conn in (client, server):
        assert any(isinstance(e, qe.HandshakeCompleted) for e in iter(conn.next_event, None))
        _quicshim.tune_ack_delay(conn, 0.05)
    return client, server


def _event(event: qe.QuicEvent) -> tuple[object, ...]:
    """An event without its connection IDs (random, so different in each pair)."""
    fields = dataclasses.asdict(event)  # type: ignore[call-overload]
    return (
        type(event).__name__,
        tuple(sorted((k, v) for k, v in fields.items() if "connection_id" not in k)),
    )


def _state(conn: QuicConnection) -> tuple[object, ...]:
    """Everything a received packet may change (but random bytes: keys, connection IDs)."""
    space = conn._spaces[tls.Epoch.ONE_RTT]
    loss = conn._loss
    window = space.received_packets
    return (
        conn._state.name,
        conn._close_at,
        conn._close_pending,
        conn._spin_bit,
        conn._spin_highest_pn,
        conn._ack_eliciting_sent_since_receipt,
        conn._cryptos[tls.Epoch.ONE_RTT].recv.key_phase,
        [c.sequence_number for c in conn._host_cids if c.cid == conn.host_cid],
        [
            (p.addr, p.is_validated, p.bytes_received, len(p.remote_challenges))
            for p in conn._network_paths
        ],
        space.expected_packet_number,
        space.largest_received_packet,
        space.largest_received_time,
        list(space.ack_queue),
        space.ack_at,
        window._lower,
        sorted(window._received),
        sorted(space.sent_packets),
        space.largest_acked_packet,
        space.ack_eliciting_in_flight,
        space.loss_time,
        loss._rtt_initialized,
        loss._rtt_latest,
        loss._rtt_min,
        loss._rtt_smoothed,
        loss._rtt_variance,
        loss._pto_count,
        loss.bytes_in_flight,
        loss.congestion_window,
        loss.peer_completed_address_validation,
        conn.get_timer(),
    )


def _corrupt(data: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(data))
    return data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1 :]


#: Steps of the script: the client moves to another of the server's CIDs (the packet that
#: says so is lost, so DATAGRAM-only packets bring the move), the server moves to another
#: of the client's (its packets just before arrive late, on a CID the client retired), the
#: client's NAT rebinds (its answer to the server's path challenge is lost, so DATAGRAMs
#: arrive on a path not validated yet).
CLIENT_CID_CHANGE = 800
SERVER_CID_CHANGE = 1700
REBINDING = 1200


def _scripted_trace(cls: type[QuicConnection], steps: int = 2500) -> list[object]:
    """A seeded lossy, reordering, duplicating and corrupting exchange of movement DATAGRAMs
    (with their ACKs), stream data, pings, key updates both ways, connection-ID changes both
    ways, a NAT rebinding and a close; the trace of every received datagram's events and the
    receiver's state after it, every flush's packet sizes and every timer."""
    rng = random.Random(16)
    client, server = _pair(cls)
    stream = client.get_next_available_stream_id()
    addr = {id(client): CLIENT_ADDR, id(server): SERVER_ADDR}
    held: list[tuple[int, QuicConnection, bytes, Any]] = []  # reordered: (due step, ...)
    trace: list[object] = []
    responded = False

    def deliver(dst: QuicConnection, data: bytes, src_addr: Any, now: float) -> None:
        dst.receive_datagram(data, src_addr, now=now)
        trace.append([_event(e) for e in iter(dst.next_event, None)])
        trace.append(_state(dst))

    for i in range(steps):
        now = 1.0 + i * 0.003
        if rng.random() < 0.5:
            client.send_datagram_frame(b"m" * rng.randrange(20, 120))
        if rng.random() < 0.5:
            server.send_datagram_frame(b"n" * rng.randrange(20, 120))
        if rng.random() < 0.01:
            client.send_stream_data(stream, b"h" * rng.randrange(1, 2000))
        if rng.random() < 0.01:
            server.send_stream_data(stream, b"r" * rng.randrange(1, 300))
        if rng.random() < 0.005:
            rng.choice((client, server)).send_ping(i)
        if rng.random() < 0.1:
            _quicshim.piggyback_ack(rng.choice((client, server)), now)
        if i in (500, 1500):
            server.request_key_update()
        if i == 1000:
            client.request_key_update()
        if i == CLIENT_CID_CHANGE:
            client.change_connection_id()
        if i == SERVER_CID_CHANGE:
            server.change_connection_id()
        if i == REBINDING:
            addr[id(client)] = REBOUND_ADDR
        if i == steps - 50:
            client.close(error_code=0, reason_phrase="bye")
        for item in [h for h in held if h[0] == i]:
            held.remove(item)
            deliver(item[1], item[2], item[3], now)
        for src, dst in ((client, server), (server, client)):
            # lost: the client's RETIRE_CONNECTION_ID, and its PATH_RESPONSE to the server's
            # first challenge of the new path
            lose_all = src is client and i == CLIENT_CID_CHANGE
            if src is client and not responded and client._network_paths[0].remote_challenges:
                lose_all = responded = True
            out = src.datagrams_to_send(now=now)
            trace.append([len(data) for data, _addr in out])
            for data, _addr in out:
                fate = rng.random()
                if lose_all:
                    continue
                if src is server and SERVER_CID_CHANGE - 10 <= i < SERVER_CID_CHANGE:
                    # arrives once the client retired the CID it is sent to: dropped
                    held.append((SERVER_CID_CHANGE + 60, dst, data, addr[id(src)]))
                    continue
                if fate < 0.05:
                    continue  # lost
                if fate < 0.10:
                    held.append((i + rng.randrange(1, 4), dst, data, addr[id(src)]))
                    continue
                if fate < 0.12:
                    deliver(dst, _corrupt(data, rng), addr[id(src)], now)
                deliver(dst, data, addr[id(src)], now)
                if fate < 0.15:
                    deliver(dst, data, addr[id(src)], now)  # a duplicate
            timer = src.get_timer()
            trace.append(timer)
            if timer is not None and timer <= now:
                src.handle_timer(now)
                trace.append(_state(src))
    assert client._state.name != "CONNECTED" and server._state.name != "CONNECTED"
    return trace


class FastPath:
    """What the fast path answered while a test ran: handled (True) or left to aioquic."""

    def __init__(self) -> None:
        self.calls = {True: 0, False: 0}
        self.connections: list[QuicConnection] = []  # that it handled a packet of

    def count(self, receiver: _quic_rx.ShortPacketReceiver, handled: bool) -> None:
        self.calls[handled] += 1
        conn = receiver._conn
        if handled and all(conn is not c for c in self.connections):
            self.connections.append(conn)


@pytest.fixture
def fast_path(monkeypatch: pytest.MonkeyPatch) -> FastPath:
    seen = FastPath()
    original = _quic_rx.ShortPacketReceiver.receive

    def counting(self: _quic_rx.ShortPacketReceiver, data: bytes, addr: Any, now: float) -> bool:
        handled = original(self, data, addr, now)
        seen.count(self, handled)
        return handled

    monkeypatch.setattr(_quic_rx.ShortPacketReceiver, "receive", counting)
    return seen


def test_fast_path_leaves_the_state_aioquic_leaves(fast_path: FastPath) -> None:
    plain = _scripted_trace(QuicConnection)
    assert fast_path.calls == {True: 0, False: 0}
    mesh = _scripted_trace(_quicshim.MeshQuicConnection)
    assert len(mesh) == len(plain)
    for step, (got, want) in enumerate(zip(mesh, plain, strict=True)):
        assert got == want, f"trace item {step}"
    # most packets took the fast path; the special cases (key updates, the new path,
    # corruptions, duplicates, stream frames, pings, the close) took aioquic's
    assert fast_path.calls[True] > 2000
    assert fast_path.calls[False] > 150
    datagrams = sum(
        1
        for item in plain
        if isinstance(item, list)
        for e in item
        if isinstance(e, tuple) and e[0] == "DatagramFrameReceived"
    )
    assert datagrams > 2000


def _raw_packet(src: QuicConnection, frames: bytes) -> bytes:
    """A 1-RTT packet of ``src`` carrying ``frames`` as given (aioquic's builder pads it
    when short), as another QUIC stack may write one; uses up a packet number of ``src``."""
    builder = QuicPacketBuilder(
        host_cid=src.host_cid,
        is_client=src._is_client,
        max_datagram_size=src._max_datagram_size,
        packet_number=src._packet_number,
        peer_cid=src._peer_cid.cid,
        spin_bit=src._spin_bit,
        version=src._version,  # type: ignore[arg-type]
    )
    builder.start_packet(QuicPacketType.ONE_RTT, src._cryptos[tls.Epoch.ONE_RTT])
    builder.start_frame(frames[0], capacity=len(frames)).push_bytes(frames[1:])
    datagrams, _packets = builder.flush()
    src._packet_number += 1
    return datagrams[0]


def test_padding_and_datagram_without_length(fast_path: FastPath) -> None:
    """aioquic never writes these in a movement packet, another stack may: PADDING runs and
    a DATAGRAM frame without a length (the rest of the packet) take the fast path with
    aioquic's result; an unknown frame type after a DATAGRAM leaves the packet to aioquic,
    which delivers the DATAGRAM and then closes the connection."""
    mesh_client, mesh_server = _pair(_quicshim.MeshQuicConnection)
    plain_client, plain_server = _pair(QuicConnection)
    fast_path.calls = {True: 0, False: 0}  # not the handshake's
    payloads = [
        b"\x30whole rest",  # DATAGRAM, no length (the builder's padding is its data)
        b"\x31\x05hello" + bytes(40),  # DATAGRAM, then PADDING
        bytes(30) + b"\x31\x02hi",  # PADDING, then DATAGRAM
        b"\x31\x01x\x1f",  # DATAGRAM, then an unknown frame type: a connection error
    ]
    for k, frames in enumerate(payloads):
        now = 2.0 + k * 0.01
        for src, dst in ((mesh_client, mesh_server), (plain_client, plain_server)):
            dst.receive_datagram(_raw_packet(src, frames), CLIENT_ADDR, now)
        got = [_event(e) for e in iter(mesh_server.next_event, None)]
        assert got == [_event(e) for e in iter(plain_server.next_event, None)]
        assert _state(mesh_server) == _state(plain_server)
        assert got[0][0] == "DatagramFrameReceived"
    assert fast_path.calls == {True: 3, False: 1}
    assert mesh_server._close_pending


def test_packet_numbers_across_the_two_byte_wrap(fast_path: FastPath) -> None:
    """Packets numbered across a multiple of 65536 (sent with two bytes of their number),
    in order and out of it: an early one after later ones (decoded down a window), a later
    one before an earlier (decoded up a window), a duplicate, one so late it is below the
    duplicate window (aioquic drops it as a duplicate). The fast path recovers each number,
    and leaves the state, aioquic's (a skipped range of numbers is legal)."""
    mesh_client, mesh_server = _pair(_quicshim.MeshQuicConnection)
    plain_client, plain_server = _pair(QuicConnection)
    fast_path.calls = {True: 0, False: 0}  # not the handshake's
    pairs = ((mesh_client, mesh_server), (plain_client, plain_server))
    sent: list[list[bytes]] = [[], []]
    # the receivers follow the numbers up, less than half a window at a time
    numbers = [30_000, 60_000, *range(65_528, 65_547), 65_800]
    for k, number in enumerate(numbers):
        for (src, _dst), out in zip(pairs, sent, strict=True):
            src._packet_number = number
            src.send_datagram_frame(number.to_bytes(4, "big"))
            datagrams = src.datagrams_to_send(now=1.0 + k * 0.001)
            assert len(datagrams) == 1
            out.append(datagrams[0][0])
    # 65536 right after 65533 (decoded up a window), 65535 and 65534 after it (down one);
    # then 65530 again, and 65546 after 65800
    order = [0, 1, *range(2, 8), 10, 9, 11, 8, *range(12, 20), 4, 21, 20]
    dropped = (4, 20)
    for step, index in enumerate(order):
        now = 2.0 + step * 0.001
        for (_src, dst), out in zip(pairs, sent, strict=True):
            dst.receive_datagram(out[index], CLIENT_ADDR, now)
        got = [_event(e) for e in iter(mesh_server.next_event, None)]
        assert got == [_event(e) for e in iter(plain_server.next_event, None)]
        if step < len(order) - 3 or index not in dropped:
            assert got == [_event(qe.DatagramFrameReceived(data=numbers[index].to_bytes(4, "big")))]
        assert _state(mesh_server) == _state(plain_server)
        if step == 1:  # the client's first packets may carry more than DATAGRAMs
            fast_path.calls = {True: 0, False: 0}
    assert fast_path.calls == {True: len(order) - 4, False: 2}  # aioquic drops both


async def arrival(inbox: Inbox, x: float) -> None:
    while not inbox.items or inbox.items[-1].position.x != x:
        await inbox.wait_for(len(inbox.items) + 1)


async def test_movement_flows_between_two_nodes_on_the_fast_path(
    make_node: NodeFactory, fast_path: FastPath
) -> None:
    """Two real PeerNodes over QUIC on loopback: position updates flow both ways, each
    delivered once and in order, the receivers handled them on the fast path, and every
    packet sent gets acknowledged (the fast path schedules ACKs and handles those received)."""
    a = await make_node(1, "Runner")
    b = await make_node(2, "Watcher")
    inboxes = [Inbox(), Inbox()]
    for node, inbox in ((a, inboxes[0]), (b, inboxes[1])):
        node.register_handler(MessageType.POSITION_UPDATE, inbox)
    await a.connect(ticket_of(b), b.endpoint)
    fast_path.calls = {True: 0, False: 0}
    for i in range(40):  # each update waits for the last one's arrival: 80 movement packets
        for node, inbox in ((a, inboxes[1]), (b, inboxes[0])):
            node.send_position_update((float(i), 0.0, 1.0), (1.0, 0.0, 0.0), location_id=5)
            await asyncio.wait_for(arrival(inbox, float(i)), 10.0)
    for inbox in inboxes:
        seqs = [u.seq for u in inbox.items]
        assert seqs == sorted(set(seqs)), "delivered out of order or twice"
        assert inbox.items[-1].position.x == 39.0
    assert fast_path.calls[True] >= 60, fast_path.calls
    assert len(fast_path.connections) == 2  # one link, both ends

    async def all_acknowledged() -> bool:
        return all(conn._loss.bytes_in_flight == 0 for conn in fast_path.connections)

    await eventually(all_acknowledged)
