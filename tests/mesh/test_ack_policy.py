"""The ACK policy of movement: a pending ACK rides on a movement datagram once it is
``ack_piggyback_ticks`` old (every 2nd datagram with movement both ways), never later
than the ACK delay, at once for anything but DATAGRAMs; loss is still detected and
movement keeps flowing between two real PeerNodes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from aioquic import tls

from mesh import _quic_rx, _quicshim
from mesh.config import MeshConfig
from mesh.node import PeerNode
from protocol.messages.base import MessageType
from tests.inbox import Inbox

from .conftest import NodeFactory, ticket_of
from .test_quicshim import CLIENT_ADDR, SERVER_ADDR, _exchange, pair

TICK = 0.05
ACK_DELAY = 2.5 * TICK
WAIT = 10.0


@dataclass
class _Side:
    """One end of the scripted pair, and what its peer saw of its ACKs."""

    conn: _quicshim.MeshQuicConnection
    addr: tuple[str, int]
    next_send: float
    packets_sent: int = 0
    acks_sent: int = 0
    # receipt times of ack-eliciting packets this side has not acknowledged yet
    unacked: list[float] = field(default_factory=list)
    # per ACK sent: (packets it acknowledged for the first time, the oldest one's wait)
    acks: list[tuple[int, float]] = field(default_factory=list)
    ack_times: list[float] = field(default_factory=list)


def _run(
    min_age: float,
    *,
    until: float = 4.0,
    drop_every: int = 0,
    stream_at: float | None = None,
    client_every: int = 1,
    server_every: int = 1,
    server_offset: float = 0.02,
    predict: bool = False,
) -> tuple[_Side, _Side, _quicshim.LossCounter]:
    """Movement both ways, a datagram each tick (the server 20 ms after the client),
    piggybacking pending ACKs (``min_age``) before each tick's flush; event by event
    (ticks and aioquic's timers), so every ACK's time is exact. ``drop_every``: lose
    every n-th client packet; ``stream_at``: the client sends stream data then;
    ``client_every`` / ``server_every``: that side sends on every n-th tick only (interest,
    or a game sending slower than the tick); ``server_offset``: how long after the client's
    tick the server's comes; ``predict``: pass the next send time of that side (the node
    passes the last interval again)."""
    client_conn, server_conn, _ = pair(cls=_quicshim.MeshQuicConnection)
    assert isinstance(client_conn, _quicshim.MeshQuicConnection)
    assert isinstance(server_conn, _quicshim.MeshQuicConnection)
    client = _Side(client_conn, CLIENT_ADDR, 1.0)
    server = _Side(server_conn, SERVER_ADDR, 1.0 + server_offset)
    _quicshim.tune_ack_delay(server_conn, ACK_DELAY)
    # as the node does: its ACKs ride on the datagrams it sends, every n-th tick
    _quicshim.tune_ack_delay(client_conn, ACK_DELAY + (client_every - 1) * TICK)
    for settle in (0.5, 0.7, 0.9):  # the handshake's delayed ACKs go out
        _exchange(client_conn, server_conn, settle)
    lost = _quicshim.count_lost_packets(client_conn)
    peer = {id(client): server, id(server): client}
    stream = client_conn.get_next_available_stream_id()
    sent_by_client = 0
    ticks = {id(client): 0, id(server): 0}
    every = {id(client): client_every, id(server): server_every}

    def flush(side: _Side, now: float) -> None:
        nonlocal sent_by_client
        space = side.conn._spaces[tls.Epoch.ONE_RTT]
        pending = space.ack_at is not None
        out = side.conn.datagrams_to_send(now=now)
        if pending and out and space.ack_at is None:  # this flush carried the ACK
            side.acks_sent += 1
            side.acks.append((len(side.unacked), now - side.unacked[0] if side.unacked else 0.0))
            side.ack_times.append(now)
            side.unacked.clear()
        other = peer[id(side)]
        for data, _addr in out:
            side.packets_sent += 1
            if side is client:
                sent_by_client += 1
                if drop_every and sent_by_client % drop_every == 0:
                    continue
            other.conn.receive_datagram(data, side.addr, now=now)
            if other.conn._spaces[tls.Epoch.ONE_RTT].ack_at is not None:
                other.unacked.append(now)  # ack-eliciting: an ACK is pending for it

    now = 1.0
    while now < until:
        timers = [t for s in (client, server) if (t := s.conn.get_timer()) is not None]
        now = min([client.next_send, server.next_send, *timers])
        for side in (client, server):
            timer = side.conn.get_timer()
            if timer is not None and timer <= now:
                side.conn.handle_timer(now)
                flush(side, now)
            if side.next_send <= now:
                side.next_send += TICK
                ticks[id(side)] += 1
                if ticks[id(side)] % every[id(side)]:
                    continue
                if stream_at is not None and side is client and now >= stream_at - 1e-9:
                    client_conn.send_stream_data(stream, b"whisper")
                    stream_at = None
                side.conn.send_datagram_frame(b"m" * 60)
                next_send = now + every[id(side)] * TICK if predict else None
                _quicshim.piggyback_ack(side.conn, now, min_age, next_send)
                flush(side, now)
        for side in (client, server):
            while side.conn.next_event() is not None:
                pass
    return client, server, lost


def test_ack_rides_every_second_datagram_and_never_waits_past_the_delay() -> None:
    ticks = int(3.0 / TICK)
    # by age (a tick and a quarter), and by count alone (an age no ACK reaches)
    for min_age in (1.25 * TICK, 10 * ACK_DELAY):
        client, server, _ = _run(min_age)
        for side in (client, server):
            # no packet of its own for an ACK: every packet is a movement tick's
            assert side.packets_sent in (ticks, ticks + 1)
            # the 2nd packet received takes the ACK along (the first ACK may cover one)
            assert [n for n, _wait in side.acks[1:]] == [2] * (len(side.acks) - 1)
            assert max(wait for _n, wait in side.acks) <= ACK_DELAY
    # without the age rule: an ACK for every packet, as before
    client, server, _ = _run(0.0)
    for side in (client, server):
        assert {n for n, _wait in side.acks} == {1}
        assert side.packets_sent in (ticks, ticks + 1)


def test_ack_to_a_sparse_sender_rides_once_old_enough() -> None:
    """The client sends every 3rd tick: each of its packets is acknowledged alone, on the
    server's first datagram once the ACK is 1.25 ticks old, never by an ACK-only packet."""
    ticks = int(3.0 / TICK)
    _client, server, _ = _run(1.25 * TICK, client_every=3)
    assert server.packets_sent in (ticks, ticks + 1)
    assert {n for n, _wait in server.acks[1:]} == {1}
    assert all(1.25 * TICK <= wait <= ACK_DELAY for _n, wait in server.acks[1:])


def test_ack_rides_now_when_its_delay_ends_before_the_next_datagram() -> None:
    """Both sides send every 2nd tick (a game at half the tick rate), the server 0.8 ticks
    after the client: its ACK is too young to ride on its next datagram, and the one after
    comes after the ACK delay. Told when it sends next, it takes the ACK along at once: no
    ACK-only packet, and no ACK waits longer than before."""
    ticks = int(3.0 / TICK)
    runs = {
        predict: _run(1.25 * TICK, client_every=2, server_every=2, server_offset=0.04,
                      predict=predict)
        for predict in (False, True)
    }  # fmt: skip
    _client, blind = runs[False][:2]
    _client, told = runs[True][:2]
    datagrams = ticks // 2
    assert blind.packets_sent >= datagrams + 8  # an ACK-only packet for every 3rd datagram
    assert told.packets_sent in (datagrams, datagrams + 1)  # none
    assert len(told.acks) >= datagrams - 2
    assert max(wait for _n, wait in told.acks) <= ACK_DELAY


def test_ack_never_waits_past_the_delay() -> None:
    """An age no ACK reaches and one packet at a time: aioquic's delayed-ACK timer still
    sends each ACK, exactly the ACK delay after its packet."""
    _client, server, _ = _run(10 * ACK_DELAY, client_every=3)
    assert len(server.acks) > 10
    assert max(wait for _n, wait in server.acks) <= ACK_DELAY + 1e-9


def test_loss_is_still_detected() -> None:
    client, server, lost = _run(1.25 * TICK, drop_every=7)
    dropped = client.packets_sent // 7
    # every dropped packet is declared lost but the last few (not yet overtaken)
    assert dropped - 1 <= lost.lost <= dropped


def test_ack_of_stream_data_is_not_held_back() -> None:
    """A packet with stream data (a whisper) is acknowledged by the receiver's next
    datagram, 20 ms later here, as before the age rule; a movement-only one would wait
    for the next tick when it is that young (one of two consecutive ticks)."""
    for stream_at in (1.5, 1.55):
        _client, server, _ = _run(1.25 * TICK, until=2.0, stream_at=stream_at)
        after = [t for t in server.ack_times if t > stream_at]
        assert after and after[0] < stream_at + TICK / 2


def _quic(node: PeerNode) -> Any:
    (link,) = node.core._table.directs.values()
    return link.quic


def _count_acks(node: PeerNode, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """From now on, count the ACK frames the node's one link receives (in the list's item),
    those aioquic handles and those the receive fast path does (mesh._quic_ack)."""
    loss = _quic(node)._loss
    original = loss.on_ack_received
    count = [0]

    def counting(*args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return original(*args, **kwargs)

    loss.on_ack_received = counting
    fast = _quic_rx.on_ack_received

    def counting_fast(recovery: Any, *args: Any) -> None:
        if recovery is loss:
            count[0] += 1
        fast(recovery, *args)

    monkeypatch.setattr(_quic_rx, "on_ack_received", counting_fast)
    return count


async def test_movement_and_whispers_flow_between_two_nodes(
    make_node: NodeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the default policy, movement flows both ways with fewer ACK frames than
    movement packets (at least one for each before) and whispers arrive."""
    config = MeshConfig()
    assert config.ack_tuning and config.ack_piggyback_ticks == 1.25
    a = await make_node(1, "A", config=config)
    b = await make_node(2, "B", config=config)
    inboxes = {1: Inbox(), 2: Inbox()}
    whispers = Inbox()
    a.register_handler(MessageType.POSITION_UPDATE, inboxes[1])
    b.register_handler(MessageType.POSITION_UPDATE, inboxes[2])
    b.register_handler(MessageType.WHISPER, whispers)
    await a.connect(ticket_of(b), b.endpoint)
    acks = {id(a): _count_acks(a, monkeypatch), id(b): _count_acks(b, monkeypatch)}
    ticks = {id(node): node.core.movement_info().ticks for node in (a, b)}

    async def run(node: PeerNode, x0: float) -> int:
        seq = 0
        for i in range(60):
            seq = node.send_position_update((x0 + i, 0.0, 0.0), (1.0, 0.0, 0.0), location_id=5).seq
            await asyncio.sleep(config.tick_interval)  # the game's frame pace (not an event wait)
        return seq

    async def until(inbox: Inbox, seq: int) -> None:
        while not inbox.items or inbox.items[-1].seq != seq:
            await inbox.wait_for(len(inbox.items) + 1)

    last_a, last_b = await asyncio.gather(run(a, 0.0), run(b, 1000.0))
    result = await a.send_whisper(2, "still there")
    assert result.path == "direct"
    await asyncio.wait_for(until(inboxes[2], last_a), WAIT)
    await asyncio.wait_for(until(inboxes[1], last_b), WAIT)
    (msg,) = await whispers.wait_for(1)
    assert msg.content == "still there"
    for me, peer in ((a, b), (b, a)):
        packets = peer.core.movement_info().ticks - ticks[id(peer)]  # one to `me` a tick
        assert packets >= 30
        # about one ACK for two: fewer ACK frames than movement packets however ticks fall
        assert 0 < acks[id(me)][0] < packets
