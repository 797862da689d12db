"""The node's one UDP socket shared by QUIC, STUN and TURN (mesh/demux.py, PeerNode)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from lobby.stun import StunResponder, StunServer
from mesh.demux import Route, SocketClients, route
from mesh.stun_client import MappingBehaviour, Retransmission, StunClient
from mesh.turn_client import TurnClient, TurnEvent
from protocol.candidates import CandidateKind
from protocol.stun import binding_request, new_transaction_id
from protocol.turn import encode_channel_data
from tests.lobby.support import FakeClock
from tests.mesh.conftest import NodeFactory, ticket_of

__all__: list[str] = []

TURN = ("192.0.2.1", 3478)
PEER = ("198.51.100.7", 9000)


@pytest.mark.parametrize(
    ("data", "source", "turn", "expected"),
    [
        (b"\x00\x01" + bytes(18), PEER, None, Route.STUN),  # Binding request
        (b"\x01\x01" + bytes(18), PEER, TURN, Route.STUN),  # Binding answer, not from TURN
        (b"\xc0\x00\x00\x00\x01", PEER, None, Route.QUIC),  # long header
        (b"\x41abc", PEER, None, Route.QUIC),  # short header: 64-79 is QUIC from a peer
        (b"\x41abc", TURN, TURN, Route.TURN),  # ... and ChannelData from the TURN server
        (b"\x01\x01" + bytes(18), TURN, TURN, Route.TURN),  # the TURN server's answer
        (b"\xc0\x00", TURN, TURN, Route.TURN),  # anything from the server is the client's
        (b"\x14\xfe\xfd", PEER, None, Route.DROP),  # DTLS (20-63): nothing we speak
        (b"", PEER, None, Route.DROP),
        (b"\x41abc", ("::ffff:192.0.2.1", 3478), TURN, Route.TURN),  # dual-stack socket
        (b"\x41abc", ("192.0.2.1", 3479), TURN, Route.QUIC),  # another port: not the server
    ],
)
def test_route_by_source_then_first_byte(
    data: bytes, source: tuple[str, int], turn: tuple[str, int] | None, expected: Route
) -> None:
    assert route(data, source, turn) is expected


def test_socket_clients_take_only_what_is_theirs() -> None:
    clients = SocketClients(StunClient(Retransmission(1.0, 2, 2)))
    quic = b"\xc0" + bytes(40)
    assert clients.receive_datagram(quic, PEER, 0.0) is False  # the core's
    # a STUN datagram that answers nothing is dropped, never passed to QUIC
    assert clients.receive_datagram(binding_request(new_transaction_id()), PEER, 0.0) is True
    assert clients.receive_datagram(b"\x20junk", PEER, 0.0) is True
    assert clients.stats == {"stun_unmatched": 1, "demux_dropped": 1}
    # a TURN client attached: datagrams from its server are its, ChannelData included
    turn = TurnClient(TURN, "user", "pass")
    clients.turn = turn
    turn.allocate(0.0)
    assert [dest for _, dest in clients.datagrams_to_send(0.0)] == [TURN]
    assert clients.get_timer() == pytest.approx(0.5)  # the Allocate's retransmission
    assert clients.receive_datagram(encode_channel_data(0x4000, b"x"), TURN, 0.0) is True
    assert clients.receive_datagram(quic, PEER, 0.0) is False
    clients.handle_timer(0.5)
    assert [dest for _, dest in clients.datagrams_to_send(0.5)] == [TURN]  # resent
    # the TURN server's host on another port (a relayed address, say) sends QUIC
    assert clients.receive_datagram(b"\x41abc", (TURN[0], TURN[1] + 1), 0.5) is False
    assert clients.receive_datagram(b"\x41abc", TURN, 0.5) is True
    clients.turn = None
    assert clients.receive_datagram(b"\x41abc", TURN, 1.0) is False  # QUIC again


def test_socket_clients_idle_only_with_no_work_of_any_kind() -> None:
    """``idle`` lets the node skip the STUN/TURN calls on a flush: it must stay False while
    anything is queued, in flight (a retransmission timer) or unread."""
    clients = SocketClients(StunClient(Retransmission(1.0, 2, 1.0)))
    assert clients.idle
    clients.stun.request(PEER, 0.0)
    assert not clients.idle  # queued
    assert len(clients.datagrams_to_send(0.0)) == 1
    assert not clients.idle  # in flight: its retransmission is on the timer
    assert clients.get_timer() == pytest.approx(1.0)
    clients.handle_timer(1.0)
    assert len(clients.datagrams_to_send(1.0)) == 1  # resent
    clients.handle_timer(2.0)  # the last wait is over: failed
    assert clients.get_timer() is None
    assert not clients.idle  # its BindingFailed is not read yet
    assert clients.next_event() is not None
    assert clients.idle
    clients.turn = TurnClient(TURN, "user", "pass")
    assert not clients.idle  # an attached TURN client is driven on every flush
    clients.turn = None
    assert clients.idle


async def test_node_flushes_and_times_a_binding_started_on_its_stun_client(
    make_node: NodeFactory,
) -> None:
    """A Binding started straight on ``node.stun`` goes out with the node's next flush
    (any API call) and is resent on the node's timer: the idle shortcut of the flush
    must not hide it."""
    node = await make_node()
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    silent.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        transaction_id = node.stun.request(silent.getsockname(), loop.time())
        node.set_location(7)  # an unrelated call: its flush sends the queued request
        for _ in range(2):  # the first send, then a retransmission on the loop timer
            data, source = await asyncio.wait_for(loop.sock_recvfrom(silent, 2048), 10)
            assert source == node.address
            assert data[8:20] == transaction_id
    finally:
        silent.close()


async def _stun_server() -> StunServer:
    server = StunServer(StunResponder(rate=100, burst=100, max_sources=10, clock=FakeClock()))
    await server.start("127.0.0.1", 0)
    return server


async def test_node_learns_its_reflexive_address_on_its_quic_socket(
    make_node: NodeFactory,
) -> None:
    """STUN answers on the mesh socket reach the STUN client, QUIC goes on beside them."""
    a, b = await make_node(), await make_node()
    servers = [await _stun_server(), await _stun_server()]
    try:
        await a.connect(ticket_of(b), b.endpoint)
        addresses = [("127.0.0.1", server.port) for server in servers]
        candidate = await a.discover_reflexive(addresses)
        assert candidate is not None
        assert candidate.kind is CandidateKind.SRFLX
        # loopback has no NAT: the reflexive address is the socket itself
        assert (candidate.address, candidate.port) == a.address
        assert a.mapping_behaviour is MappingBehaviour.ENDPOINT_INDEPENDENT
        result = await a.send_whisper(b.peer_id, "still here")
        assert result.path == "direct"
        assert a.stats["stun_unmatched"] == 0
        assert a.stats["dropped_packets"] == 0  # no STUN answer was fed to QUIC
    finally:
        for server in servers:
            await server.close()


async def test_silent_stun_server_gives_no_candidate(make_node: NodeFactory) -> None:
    node = await make_node()
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        # answers nothing: the transaction fails after STUN_RETRANSMISSION, within 2.75 s
        assert await asyncio.wait_for(node.discover_reflexive([silent.getsockname()]), 20) is None
        assert node.stun.pending == 0
        # an unresolvable name counts as a server that did not answer
        assert await node.discover_reflexive(["no-such-host.invalid:3478"]) is None
    finally:
        silent.close()


async def test_attached_turn_client_gets_its_servers_datagrams(make_node: NodeFactory) -> None:
    """A TURN client attached to the node sends from the mesh socket, on the node's timer,
    and what its server answers (even bytes that look like QUIC) goes to it, not the core."""
    node = await make_node()
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.setblocking(False)
    loop = asyncio.get_running_loop()
    events: list[TurnEvent] = []
    failed = asyncio.Event()

    def on_event(event: TurnEvent) -> None:
        events.append(event)
        failed.set()

    try:
        address = server.getsockname()
        turn = TurnClient(address, "user", "pass", retransmission=Retransmission(0.05, 3, 2))
        node.attach_turn(turn, on_event)
        assert node.turn is turn
        turn.allocate(loop.time())
        node.attach_turn(turn, on_event)  # flushes the Allocate
        first, source = await asyncio.wait_for(loop.sock_recvfrom(server, 2048), 10)
        assert source == node.address and first[0] <= 3
        again, _ = await asyncio.wait_for(loop.sock_recvfrom(server, 2048), 10)
        assert again == first  # resent by the node's timer
        await loop.sock_sendto(server, encode_channel_data(0x4001, b"q" * 40), node.address)
        await loop.sock_sendto(server, b"\xc3" + bytes(60), node.address)  # QUIC-looking
        await asyncio.wait_for(failed.wait(), 10)  # no real answer: the allocation fails
        assert [type(event).__name__ for event in events] == ["AllocationFailed"]
        assert node.stats["dropped_packets"] == 0  # nothing from the server reached QUIC
    finally:
        node.attach_turn(None)
        server.close()
