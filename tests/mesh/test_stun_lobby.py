"""The mesh's STUN client on a real UDP socket, against the lobby's STUN port (loopback)."""

from __future__ import annotations

import asyncio
from typing import Any

from lobby.stun import StunResponder, StunServer
from mesh.stun_client import (
    BindingFailed,
    BindingSucceeded,
    MappingBehaviour,
    Retransmission,
    StunClient,
)
from tests.lobby.support import FakeClock
from tests.mesh.udp_proxy import Faults, UdpProxy
from tests.netlab_agent import StunSocket

__all__: list[str] = []


async def test_node_socket_learns_its_address_from_the_lobby(lobby: Any) -> None:
    assert lobby.stun_port is not None
    sock = await StunSocket.open("127.0.0.1")
    try:
        event = await sock.binding(("127.0.0.1", lobby.stun_port))
        assert isinstance(event, BindingSucceeded)
        assert event.mapped == sock.address
        assert event.rtt is not None and event.rtt >= 0
        assert sock.client.mapped_address() == sock.address
        # a second server sees the same mapping: loopback maps endpoint-independently
        other = StunServer(StunResponder(rate=10, burst=10, max_sources=10, clock=FakeClock()))
        port = await other.start("127.0.0.1", 0)
        try:
            assert isinstance(await sock.binding(("127.0.0.1", port)), BindingSucceeded)
        finally:
            await other.close()
        assert sock.client.mapping_behaviour() is MappingBehaviour.ENDPOINT_INDEPENDENT
    finally:
        sock.close()


async def test_retransmission_gets_through_a_lossy_path(lobby: Any) -> None:
    proxy = UdpProxy(
        ("127.0.0.1", lobby.stun_port),
        seed=7,
        faults=Faults(loss=0.5, duplicate=0.3, reorder=0.3, max_delay=0.01),
        max_packets=200,
    )
    await proxy.start()
    client = StunClient(Retransmission(0.05, 12, 4))
    sock = await StunSocket.open("127.0.0.1", client=client)
    try:
        outcomes = [await sock.binding(proxy.address) for _ in range(5)]
        assert all(isinstance(event, BindingSucceeded) for event in outcomes)
        assert proxy.stats.dropped > 0  # the path really lost packets
        assert client.pending == 0
    finally:
        sock.close()
        proxy.close()


async def test_silent_server_fails_after_the_backoff() -> None:
    silent = await StunSocket.open("127.0.0.1")  # a socket that never answers STUN
    client = StunClient(Retransmission(0.01, 3, 2))
    sock = await StunSocket.open("127.0.0.1", client=client)
    try:
        event = await sock.binding(silent.address)
        assert isinstance(event, BindingFailed) and "3 sends" in event.reason
        received = [(await asyncio.wait_for(silent.inbox.get(), 5))[0] for _ in range(3)]
        assert len(set(received)) == 1  # the same request, resent
        assert silent.inbox.empty()
    finally:
        sock.close()
        silent.close()
