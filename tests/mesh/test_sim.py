"""Deterministic virtual-time tests of the sans-I/O core over many seeds."""

from __future__ import annotations

from collections import Counter

import pytest

from mesh._quicshim import ACK_ONLY_PING_UID, MeshQuicConnection
from mesh.core import MeshConfig
from mesh.link import LinkState
from protocol.messages.chat import PartyChatMessage, WhisperMessage
from protocol.messages.location import PositionUpdateMessage, Vec3

from .sim import SimNet

SEEDS = range(30)
HANDSHAKING, ACTIVE = LinkState.HANDSHAKING, LinkState.ACTIVE


def slow_config() -> MeshConfig:
    return MeshConfig(send_timeout=600.0, idle_timeout=20.0, dial_timeout=10.0, redial_backoff=5.0)


@pytest.mark.parametrize("seed", SEEDS)
def test_chat_exactly_once_in_order_with_loss_and_a_cut(seed: int) -> None:
    """20 % loss, duplication, jitter, and a cut long enough to kill the connection.

    Messages sent before and during the cut are resent on the new connection and
    deduplicated by the receiver: each is delivered once, in order.
    """
    net = SimNet(seed, loss=0.2, duplicate=0.1, delay=(0.001, 0.05), config=slow_config)
    a, b = net.add(1), net.add(2)
    net.establish(a, b)
    sent_ab, sent_ba = [], []
    handles = []
    for i in range(30):
        if i == 10:
            net.cut.add(b.addr)
        if i == 20:
            # past the idle timeout: the connection dies, a redial starts; the path heals
            # while the redial is still trying, and the new connection carries the backlog
            net.run_for(22.0)
            assert not net.connected(a, b)
            net.cut.clear()
        msg = PartyChatMessage(content=f"a{i}") if i % 3 == 0 else WhisperMessage(content=f"a{i}")
        handles.append((a, net.send(a, b, msg)))
        sent_ab.append(f"a{i}")
        handles.append((b, net.send(b, a, WhisperMessage(content=f"b{i}"))))
        sent_ba.append(f"b{i}")
        net.run_for(0.05)
    net.run_until(lambda: all(h in n.settled for n, h in handles), limit=600.0)
    assert all(n.settled[h].error is None for n, h in handles)
    net.run_for(2.0)
    assert [e.message.content for e in b.delivered()] == sent_ab  # type: ignore[attr-defined]
    assert [e.message.content for e in a.delivered()] == sent_ba  # type: ignore[attr-defined]
    assert {e.message.sender_id for e in b.delivered()} == {1}  # type: ignore[attr-defined]
    assert net.connected(a, b)


@pytest.mark.parametrize("seed", SEEDS)
def test_relay_takes_over_when_the_direct_path_dies(seed: int) -> None:
    net = SimNet(seed, loss=0.1, relay=True, relay_loss=0.3, config=slow_config)
    a, b = net.add(1), net.add(2)
    net.establish(a, b)
    net.cut.add(b.addr)  # b is now behind a firewall for good
    handles = [net.send(a, b, WhisperMessage(content=f"m{i}")) for i in range(15)]
    net.run_until(lambda: all(h in a.settled for h in handles), limit=600.0)
    assert all(a.settled[h].error is None for h in handles)
    assert {a.settled[h].path for h in handles} == {"relay"}
    net.run_for(5.0)
    assert [e.message.content for e in b.delivered()] == [f"m{i}" for i in range(15)]  # type: ignore[attr-defined]
    assert {e.path for e in b.delivered()} == {"relay"}


@pytest.mark.parametrize("seed", SEEDS)
def test_simultaneous_dials_leave_one_link_per_pair(seed: int) -> None:
    net = SimNet(seed, loss=0.15, duplicate=0.05)
    nodes = [net.add(i + 1) for i in range(3)]
    for x in nodes:
        for y in nodes:
            if x is not y:
                net.connect(x, y)
    net.run_until(
        lambda: all(net.connected(x, y) for x in nodes for y in nodes if x is not y), limit=120.0
    )
    net.run_for(10.0)
    for node in nodes:
        live = [li for li in node.core.links() if li.state in (HANDSHAKING, ACTIVE)]
        assert len(live) == 2 and all(li.state is ACTIVE for li in live)
        assert len(node.core.peers) == 2
    handles = [net.send(nodes[0], nodes[1], WhisperMessage(content=f"x{i}")) for i in range(5)]
    net.run_until(lambda: all(h in nodes[0].settled for h in handles))
    assert [e.message.content for e in nodes[1].delivered()] == [f"x{i}" for i in range(5)]  # type: ignore[attr-defined]


@pytest.mark.parametrize("seed", range(10))
def test_movement_newest_wins_under_reordering(seed: int) -> None:
    net = SimNet(seed, loss=0.2, duplicate=0.2, delay=(0.001, 0.2))
    a, b = net.add(1), net.add(2)
    net.establish(a, b)
    for i in range(300):
        seq = (65500 + i) & 0xFFFF  # crosses the wrap-around
        a.core.queue_position(
            PositionUpdateMessage(
                character_id=1, location_id=3, position=Vec3(x=float(i)), seq=seq
            ),
            net.now,
        )
        net.run_for(0.02)
    net.run_for(2.0)
    got = [e.update.position.x for e in b.positions()]
    assert got == sorted(got) and len(set(got)) == len(got)
    assert got and len(got) < 300


def _movement_packets(ack_tuning: bool, seed: int) -> tuple[int, int]:
    """Packets both nodes send while exchanging 100 ticks of movement (no loss)."""
    net = SimNet(seed, delay=(0.002, 0.004), config=lambda: MeshConfig(ack_tuning=ack_tuning))
    a, b = net.add(1), net.add(2)
    net.establish(a, b)
    net.run_for(1.0)
    before = net.packets
    ticks = 100
    for i in range(ticks):
        for node in (a, b):
            node.core.queue_position(
                PositionUpdateMessage(
                    character_id=node.character_id, location_id=1, position=Vec3(x=i), seq=i + 1
                ),
                net.now,
            )
            net.flush(node)
        net.run_for(0.05)
    net.run_for(0.5)
    assert len(b.positions()) == ticks and len(a.positions()) == ticks
    return net.packets - before, 2 * ticks


@pytest.mark.parametrize("seed", range(3))
def test_ack_tuning_halves_packets_per_update(seed: int) -> None:
    plain, updates = _movement_packets(False, seed)
    tuned, _ = _movement_packets(True, seed)
    assert plain >= 1.8 * updates  # an ACK-only packet for nearly every update
    assert tuned <= 1.2 * updates  # ACKs ride on the movement datagrams


def test_keepalive_holds_an_idle_connection_and_a_vanished_peer_is_dropped() -> None:
    net = SimNet(7, config=lambda: MeshConfig(idle_timeout=3.0, keepalive_interval=1.0))
    a, b = net.add(1), net.add(2)
    net.establish(a, b)
    net.run_for(30.0)  # ten idle timeouts with no application traffic
    assert net.connected(a, b)
    net.cut.add(b.addr)  # b vanishes without a word
    net.run_for(10.0)
    gone = [e for e in a.events if type(e).__name__ == "PeerDisconnected"]
    assert len(gone) == 1 and gone[0].identity.character_id == 2  # type: ignore[attr-defined]
    assert a.core.peers == {}


def test_a_peer_heard_moving_gets_no_keepalive_and_the_link_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only a moves, for ten idle timeouts: b hears it and sends no keepalive PING (its
    ACKs keep a's idle timer fresh), only the PING on every 16th ACK-only packet that gets
    its ACKs acknowledged; a hears only ACKs and still sends its keepalives."""
    config = lambda: MeshConfig(  # noqa: E731
        idle_timeout=3.0, keepalive_interval=1.0, tick_interval=0.05, path_probe_interval=60.0
    )
    net = SimNet(7, delay=(0.002, 0.004), config=config)
    a, b = net.add(1), net.add(2)
    net.establish(a, b)  # a dials: its connection is the client one
    pings: Counter[str] = Counter(a=0, b=0)
    send_ping = MeshQuicConnection.send_ping

    def counting(conn: MeshQuicConnection, uid: int) -> None:
        side = "a" if conn.configuration.is_client else "b"
        pings[side if uid != ACK_ONLY_PING_UID else f"{side} ack-only"] += 1
        send_ping(conn, uid)

    monkeypatch.setattr(MeshQuicConnection, "send_ping", counting)
    for i in range(600):  # 30 s at 20 Hz
        update = PositionUpdateMessage(character_id=1, location_id=1, position=Vec3(x=i), seq=i)
        a.core.queue_position(update, net.now)
        net.flush(a)
        net.run_for(0.05)
    assert net.connected(a, b)
    assert len(b.positions()) == 600
    assert pings["b"] == 0 and pings["a"] >= 25, pings
    assert "a ack-only" not in pings and pings["b ack-only"] >= 5, pings


def test_demux_ignores_junk_and_small_initials() -> None:
    net = SimNet(8)
    a = net.add(1)
    core = a.core
    for junk in (b"", b"\x00", b"\x40" + b"\x11" * 30, b"\xc0" + b"\x00" * 50):
        core.receive_datagram(junk, ("10.9.9.9", 1), 0.0)
    # a genuine client Initial, but cut below 1200 bytes, creates no connection
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection

    client = QuicConnection(configuration=QuicConfiguration(is_client=True, alpn_protocols=["x"]))
    client.connect(a.addr, now=0.0)
    (initial, _), *_ = client.datagrams_to_send(now=0.0)
    core.receive_datagram(initial[:1100], ("10.9.9.9", 1), 0.0)
    assert core.links() == []
    assert core.stats["dropped_packets"] == 5
    core.receive_datagram(initial, ("10.9.9.9", 1), 0.0)  # the full one does
    (link,) = core.links()
    assert (link.state, link.outbound, link.address) == (HANDSHAKING, False, ("10.9.9.9", 1))


def test_peers_elsewhere_get_movement_less_often() -> None:
    net = SimNet(9, delay=(0.002, 0.004))
    a, near, far = net.add(1), net.add(2), net.add(3)
    for other in (near, far):
        net.connect(a, other)
        net.run_until(lambda o=other: net.connected(a, o))  # type: ignore[misc]
    a.core.set_peer_location(2, 5, net.now)
    a.core.set_peer_location(3, 9, net.now)
    for i in range(80):
        a.core.queue_position(
            PositionUpdateMessage(character_id=1, location_id=5, position=Vec3(x=i), seq=i + 1),
            net.now,
        )
        net.flush(a)
        net.run_for(0.05)
    net.run_for(0.5)
    assert len(near.positions()) == 80
    assert 15 <= len(far.positions()) <= 25  # every 4th tick


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1000, 1300))
def test_many_seeds_chat_with_loss_and_cut(seed: int) -> None:
    test_chat_exactly_once_in_order_with_loss_and_a_cut(seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2000, 2200))
def test_many_seeds_relay_takeover(seed: int) -> None:
    test_relay_takes_over_when_the_direct_path_dies(seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3000, 3200))
def test_many_seeds_simultaneous_dials(seed: int) -> None:
    test_simultaneous_dials_leave_one_link_per_pair(seed)
