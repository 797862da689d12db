"""Connection quality per peer: the shim's RTT and loss readings, the core's snapshot,
and PeerNode's public view over a direct link, a lossy link and the relay."""

from __future__ import annotations

import asyncio
import io
import json

import pytest
from aioquic.quic import events as qe
from aioquic.quic.connection import QuicConnection

from mesh import ConnectionQuality, _quicshim
from mesh.terminal import Command, Output, parse_command, quality_report
from protocol.messages.base import MessageType
from protocol.messages.chat import WhisperMessage
from tests.inbox import Inbox

from .conftest import NodeFactory, ticket_of
from .sim import SimNet
from .test_fallback import LoopbackRelay, fast, relayed_pair, silent_endpoint
from .test_quicshim import CLIENT_ADDR, _exchange, pair
from .udp_proxy import Faults, UdpProxy

__all__ = ["silent_endpoint"]  # the fixture, re-used


# the shim ---------------------------------------------------------------------------------


def test_rtt_stats_none_before_a_sample_then_the_estimates() -> None:
    client, server, _ = pair()
    fresh = _quicshim.MeshQuicConnection(configuration=client.configuration)
    assert _quicshim.rtt_stats(fresh) is None
    assert _quicshim.packets_sent(fresh) == 0
    stream = client.get_next_available_stream_id()
    client.send_stream_data(stream, b"ping")
    for data, _addr in client.datagrams_to_send(now=1.0):
        server.receive_datagram(data, CLIENT_ADDR, now=1.04)
    _exchange(client, server, 1.08)  # the server's ACK arrives 80 ms after the send
    stats = _quicshim.rtt_stats(client)
    assert stats is not None
    assert stats.latest == pytest.approx(0.08, abs=0.03)  # virtual time: exact up to ack delay
    assert 0 < stats.minimum <= stats.latest
    assert stats.smoothed > 0 and stats.variance >= 0
    assert _quicshim.packets_sent(client) >= 3  # the handshake and the data


def _next_time(now: float, *conns: QuicConnection) -> float:
    """The next timer of ``conns`` (1 us past it: aioquic's pacing rounds), never earlier."""
    timers = [t for c in conns if (t := c.get_timer()) is not None]
    assert timers
    return max(now, min(timers) + 1e-6)


def test_count_lost_packets_counts_what_loss_recovery_gives_up_on() -> None:
    client, server, _ = pair()
    counter = _quicshim.count_lost_packets(client)
    assert counter.lost == 0
    stream = client.get_next_available_stream_id()
    payload = bytes(range(200))  # one packet
    client.send_stream_data(stream, payload, end_stream=True)
    now = 0.0
    for _ in range(20):  # everything the client sends vanishes, until it declares a loss
        client.datagrams_to_send(now=now)
        if counter.lost:
            break
        now = _next_time(now, client)
        client.handle_timer(now=now)
    assert counter.lost >= 1
    sent = _quicshim.packets_sent(client)
    assert sent > counter.lost
    # the path heals: the retransmission (aioquic's own loss handling, still called)
    # delivers the stream (bounded rounds)
    received = b""
    for _ in range(20):
        _exchange(client, server, now)
        for event in iter(server.next_event, None):
            if isinstance(event, qe.StreamDataReceived):
                received += event.data
        if received == payload:
            break
        now = _next_time(now, client, server)
        for side in (client, server):
            if (t := side.get_timer()) is not None and t <= now:
                side.handle_timer(now=now)
    assert received == payload
    assert _quicshim.packets_sent(client) > sent


# the core, in virtual time ------------------------------------------------------------------


def test_quality_follows_the_path_in_use_and_a_silent_direction() -> None:
    net = SimNet(3, relay=True)
    a, b = net.add(1), net.add(2)
    net.establish(a, b)
    net.send(a, b, WhisperMessage(content="hello"))
    net.run_for(1.0)
    q = a.core.connection_quality(2, net.now)
    assert q is not None and q.path == "direct" and q.peer_id == b.core.identity.peer_id
    assert q.address == b.addr and q.rtt is not None and q.rtt > 0
    assert q.bytes_sent > 0 and q.bytes_received > 0 and q.packets_sent > 0
    assert q.pending_reliable == 0 and q.relay_bytes_sent == 0
    assert set(a.core.connection_qualities(net.now)) == {b.core.identity.peer_id}
    assert a.core.connection_quality(99, net.now) is None  # unknown

    net.blocked.add((b.addr, a.addr))  # B's datagrams to A vanish
    handle = net.send(a, b, WhisperMessage(content="over the relay"))
    net.run_until(
        lambda: (q := a.core.connection_quality(2, net.now)) is not None and q.path == "relay",
        limit=10.0,
    )  # relayed after the direct path left it unacknowledged
    net.run_until(lambda: handle in a.settled, limit=30.0)
    assert a.settled[handle].path == "relay"
    net.run_for(10.0)
    q = a.core.connection_quality(2, net.now)
    assert q is not None
    assert q.silent_for is not None and q.silent_for > 5.0  # virtual seconds: deterministic
    assert q.relay_bytes_sent > 0 and q.relay_bytes_received > 0
    assert q.packets_lost > 0 and q.loss is not None and 0 < q.loss <= 1
    assert q.path == "relay"  # the link has not carried an acknowledgement since
    seen_by_b = b.core.connection_quality(1, net.now)
    assert seen_by_b is not None and seen_by_b.relay_bytes_received > 0
    net.blocked.clear()  # the link works again: its first acknowledgement brings it back
    handle = net.send(a, b, WhisperMessage(content="both ways again"))
    net.run_until(lambda: handle in a.settled, limit=30.0)
    net.run_until(  # the relayed copy may win; the direct one is acknowledged on the link
        lambda: (q := a.core.connection_quality(2, net.now)) is not None and q.path == "direct",
        limit=30.0,
    )


# real nodes -----------------------------------------------------------------------------------


async def test_node_reports_a_direct_link_and_its_loss(make_node: NodeFactory) -> None:
    a = await make_node(1, "Alice")
    b = await make_node(2, "Bob")
    assert a.connection_quality(2) is None  # unknown peer
    inbox = Inbox()
    b.register_handler(MessageType.WHISPER, inbox)
    faults = Faults(loss=0.3, duplicate=0.0, reorder=0.0)
    async with UdpProxy(b.address, seed=7, faults=faults, max_packets=5_000) as proxy:
        host, port = proxy.address
        await a.connect(ticket_of(b), f"{host}:{port}")
        sent = 0
        while sent < 40:  # bounded: until QUIC has declared one of our packets lost
            await asyncio.wait_for(a.send_whisper(2, f"w{sent}"), timeout=30)
            sent += 1
            q = a.connection_quality(2)
            if q is not None and q.packets_lost:
                break
        await inbox.wait_for(sent)
        q = a.connection_quality(2)
        assert isinstance(q, ConnectionQuality)
        assert q.path == "direct" and q.character_id == 2 and q.character_name == "Bob"
        assert q.address == proxy.address
        assert q.rtt is not None and q.rtt_min is not None and q.rtt_variance is not None
        assert 0 < q.rtt_min <= q.rtt + q.rtt_variance
        assert q.bytes_sent > 0 and q.bytes_received > 0
        assert q.packets_sent >= sent
        # 30 % of datagrams vanish in each direction: QUIC declares some of ours lost
        assert q.packets_lost > 0 and q.loss == q.packets_lost / q.packets_sent
        assert q.silent_for is not None and q.silent_for >= 0
        assert q.pending_reliable == 0
        by_peer = a.connection_qualities()
        assert list(by_peer) == [b.peer_id]
        assert by_peer[b.peer_id].character_id == 2
        assert a.connection_quality(b.peer_id) is not None  # peer id works too
    await a.close()
    assert a.connection_quality(2) is None and a.connection_qualities() == {}


async def test_node_reports_the_relay_path(
    make_node: NodeFactory, silent_endpoint: tuple[str, int]
) -> None:
    relay = LoopbackRelay()
    a, b = await relayed_pair(make_node, relay, fast())
    a.add_peer(ticket_of(b), silent_endpoint)  # nobody answers there: the relay carries it
    assert a.connection_quality(2) is None  # known, not connected by any path yet
    result = await a.send_whisper(2, "through the lobby")
    assert result.path == "relay"
    q = a.connection_quality(2)
    assert q is not None and q.path == "relay"
    assert q.address is None and q.rtt is None and q.loss is None and q.silent_for is None
    assert q.relay_bytes_sent > 0 and q.relay_bytes_received > 0  # the envelope, the ack
    assert set(a.connection_qualities()) == {b.peer_id}
    back = b.connection_quality(1)  # Bob heard Alice through the relay
    assert back is not None and back.path == "relay" and back.relay_bytes_received > 0


async def test_terminal_quality_command_lists_each_connected_peer(
    make_node: NodeFactory,
) -> None:
    """``/quality`` in the terminal peer: one line and one JSON row per connected peer."""
    a, b = await make_node(1, "alice"), await make_node(2, "bob")
    assert parse_command("/quality", "lan") == Command("quality")
    assert parse_command("/net", "lobby") == Command("quality")
    text, rows = quality_report(a.connection_qualities().values())
    assert (text, rows) == ("  no peer connected", [])
    await a.connect(ticket_of(b), b.endpoint)
    await a.send_whisper(2, "hello")
    text, rows = quality_report(a.connection_qualities().values())
    (row,) = rows
    assert row["name"] == "bob" and row["character_id"] == 2 and row["path"] == "direct"
    assert row["rtt_ms"] is not None and row["rtt_ms"] >= 0
    assert row["bytes_sent"] > 0 and row["bytes_received"] > 0 and row["pending"] == 0
    assert text.startswith("  bob: direct, rtt ") and "sent " in text and "received " in text
    stream = io.StringIO()
    Output(stream, as_json=True).emit("quality", text, peers=rows)
    assert json.loads(stream.getvalue())["peers"][0]["path"] == "direct"
