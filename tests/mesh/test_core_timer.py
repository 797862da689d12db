"""MeshCore.get_timer keeps the soonest deadline of its rarely changing sources (reliable
sends, direct-path retries, credential expiry) between changes: each change must move it."""

from __future__ import annotations

from aioquic import tls

from mesh.events import PeerDisconnected, PositionReceived
from mesh.handshake import CloseCode
from protocol.messages.chat import WhisperMessage
from protocol.messages.location import PositionUpdateMessage, Vec3

from .sim import BASE_TIME, SimNet

__all__: list[str] = []


def test_a_reliable_send_after_a_read_moves_the_timer_earlier() -> None:
    net = SimNet(0, relay=True)
    a, b = net.add(1), net.add(2)
    a.core.add_peer(b.ticket, None, net.now)  # known, no endpoint: the relay carries it
    assert a.core.get_timer() is None  # nothing to do, and now read (and kept)
    handle = net.send(a, b, WhisperMessage(content="hi"))
    at = a.core.get_timer()
    assert at is not None and at <= net.now + a.core.config.send_timeout
    net.run_until(lambda: handle in a.settled, limit=30.0)  # the timer drives it home
    assert a.settled[handle].error is None


def test_a_wall_clock_step_moves_the_credential_expiry_timer() -> None:
    net = SimNet(0)
    a, b = net.add(1), net.add(2, ttl=3600.0)
    net.establish(a, b)
    first = a.core.get_timer()
    assert first is not None and first < net.now + 3600.0  # the links' own timers, sooner
    # the wall clock steps past b's expiry (BASE_TIME + 3600): due a second ago
    a.core.wall_offset = BASE_TIME + 3600.0 - net.now + 1.0
    at = a.core.get_timer()
    assert at is not None and at <= net.now - 1.0 + 1e-6
    a.core.handle_timer(net.now)
    net.flush(a)
    gone = [e for e in a.events if isinstance(e, PeerDisconnected)]
    assert [e.code for e in gone] == [CloseCode.TICKET_EXPIRED]


def test_a_movement_datagram_owes_an_ack_that_leaves_at_its_deadline() -> None:
    """A received movement DATAGRAM that leaves nothing to send now skips the flush (it
    would find nothing), but the timer is re-read: the delayed ACK it owes becomes the
    core's deadline, and handling that deadline sends it."""
    net = SimNet(0, delay=(0.002, 0.002))
    a, b = net.add(1), net.add(2)
    net.establish(a, b)
    net.run_for(1.0)  # the handshake's ACKs are gone: both connections are quiet
    (link,) = b.core._table.directs.values()
    space = link.quic._spaces[tls.Epoch.ONE_RTT]
    for i in range(3):
        before = b.core.get_timer()  # read (and cached) before the datagram
        update = PositionUpdateMessage(character_id=1, location_id=3, position=Vec3(x=i), seq=i)
        a.core.queue_position(update, net.now)
        a.core.tick_movement(net.now)
        (packet,) = [data for data, _ in a.core.datagrams_to_send(net.now)]
        now = net.now = net.now + 0.002
        b.core.receive_datagram(packet, a.addr, now)
        got = [e.update.seq for e in b.core.events if isinstance(e, PositionReceived)]
        assert got[-1:] == [i]
        ack_at = space.ack_at
        assert ack_at is not None and ack_at > now  # owed, not due yet
        assert b.core.datagrams_to_send(now) == []  # nothing before the deadline
        timer = b.core.get_timer()
        assert timer is not None and timer <= ack_at, (before, timer, ack_at)
        net.now = timer + 1e-6
        b.core.handle_timer(net.now)
        (ack,) = b.core.datagrams_to_send(net.now)  # the ACK, at its deadline
        assert space.ack_at is None
        a.core.receive_datagram(ack[0], b.addr, net.now)
        net.run_for(0.5)
