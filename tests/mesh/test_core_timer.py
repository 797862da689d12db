"""MeshCore.get_timer keeps the soonest deadline of its rarely changing sources (reliable
sends, direct-path retries, credential expiry) between changes: each change must move it."""

from __future__ import annotations

from mesh.events import PeerDisconnected
from mesh.handshake import CloseCode
from protocol.messages.chat import WhisperMessage

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
