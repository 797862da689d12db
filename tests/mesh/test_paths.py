"""Paths that change: a direct link silent one way, the relay taking over, direct coming back.

Virtual time (:mod:`tests.mesh.sim`): the direct path is black-holed in one
direction after the handshake while the lobby relay works. Every whisper is
delivered once, in order, and acknowledged to its sender (path ``"relay"``
while the direct path is silent, never a false ``PeerUnreachableError``); once
the black hole is gone, traffic is back on ``"direct"`` with nothing duplicated.
"""

from __future__ import annotations

import asyncio

import pytest

from mesh.core import MeshConfig
from protocol.messages.base import MessageType
from protocol.messages.chat import WhisperMessage
from tests.inbox import Inbox

from .conftest import NodeFactory, ticket_of
from .sim import SimNet, SimNode
from .test_fallback import LoopbackRelay, relayed_pair
from .udp_proxy import Faults, UdpProxy

SEEDS = range(8)


def contents(node: SimNode) -> list[str]:
    return [e.message.content for e in node.delivered()]  # type: ignore[attr-defined]


def black_hole(net: SimNet, src: SimNode, dst: SimNode) -> None:
    net.blocked.add((src.addr, dst.addr))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("silent", ["forward", "backward"])
def test_whisper_over_a_one_way_silent_path_is_acknowledged_by_the_relay(
    seed: int, silent: str
) -> None:
    """``forward``: A's datagrams to B vanish (B still thinks the link is up and used to
    acknowledge on it); ``backward``: B's datagrams to A vanish (B receives A's whisper
    directly, its acknowledgement on that link never arrives)."""
    net = SimNet(seed, loss=0.05, relay=True, relay_loss=0.1)  # default config: 15 s deadline
    a, b = net.add(1), net.add(2)
    net.establish(a, b)
    if silent == "forward":
        black_hole(net, a, b)
    else:
        black_hole(net, b, a)
    handles = [net.send(a, b, WhisperMessage(content=f"m{i}")) for i in range(5)]
    net.run_until(lambda: all(h in a.settled for h in handles), limit=60.0)
    assert [a.settled[h].error for h in handles] == [None] * 5
    assert {a.settled[h].path for h in handles} == {"relay"}
    net.run_for(3.0)
    assert contents(b) == [f"m{i}" for i in range(5)]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("outage", [5.0, 45.0])
def test_traffic_returns_to_direct_when_the_path_comes_back(seed: int, outage: float) -> None:
    """A short outage (the link survives) and one past the idle timeout (a new link is
    dialled): either way, later whispers settle on ``"direct"`` and nothing is duplicated."""
    net = SimNet(seed, loss=0.05, relay=True, config=lambda: MeshConfig(send_timeout=15.0))
    a, b = net.add(1), net.add(2)
    net.establish(a, b)
    black_hole(net, a, b)
    sent: list[str] = []
    handles: list[int] = []

    def whisper() -> int:
        text = f"w{len(sent)}"
        sent.append(text)
        handle = net.send(a, b, WhisperMessage(content=text))
        handles.append(handle)
        return handle

    first = whisper()
    net.run_until(lambda: first in a.settled, limit=30.0)
    assert a.settled[first].path == "relay"
    net.run_for(outage)
    net.blocked.clear()
    # the path is healed: a whisper every 2 s until one is acknowledged directly (bounded;
    # after the long outage A's old link is gone only at its idle timeout, then redialled)
    for _ in range(60):
        handle = whisper()
        net.run_until(lambda h=handle: h in a.settled, limit=30.0)  # type: ignore[misc]
        if a.settled[handle].path == "direct":
            break
        net.run_for(2.0)
    else:
        raise AssertionError("traffic never returned to the direct path")
    after = whisper()
    net.run_until(lambda: after in a.settled, limit=30.0)
    assert a.settled[after].path == "direct"
    assert all(a.settled[h].error is None for h in handles)
    net.run_for(5.0)
    assert contents(b) == sent  # each once, in order
    assert net.connected(a, b)


# real sockets ---------------------------------------------------------------------------


class SlowRelay(LoopbackRelay):
    """The loopback relay with the lobby's extra hop: each envelope arrives 50 ms later,
    so a working direct link (loopback) is the faster path, as on the internet."""

    def __init__(self) -> None:
        super().__init__()
        self.timers: list[asyncio.TimerHandle] = []

    async def send(self, target_character_id: int, data: bytes) -> None:
        self.seen.append(data)
        node = self.nodes[target_character_id]
        self.timers.append(asyncio.get_running_loop().call_later(0.05, node.receive_relayed, data))

    def close(self) -> None:
        for timer in self.timers:
            timer.cancel()


def quick() -> MeshConfig:
    return MeshConfig(direct_ack_timeout=0.5, relay_resend_interval=0.5, send_timeout=15.0)


async def test_real_nodes_acknowledge_through_the_relay_when_replies_vanish(
    make_node: NodeFactory,
) -> None:
    """Two PeerNodes through a UDP proxy that black-holes B's replies to A: A's whisper
    reaches B directly, B's acknowledgement on that link never comes back; the relayed
    copy is acknowledged through the relay. When the proxy heals, whispers settle on
    ``"direct"`` again; B delivers each whisper exactly once."""
    relay = SlowRelay()
    a, b = await relayed_pair(make_node, relay, quick())
    inbox = Inbox()
    b.register_handler(MessageType.WHISPER, inbox)
    try:
        faults = Faults(loss=0.0, duplicate=0.0, reorder=0.0)
        async with UdpProxy(b.address, seed=1, faults=faults, max_packets=5_000) as proxy:
            host, port = proxy.address
            await a.connect(ticket_of(b), f"{host}:{port}")
            faults.drop_to_client = True  # B -> A goes silent; B still thinks the link is up
            silent = await asyncio.wait_for(a.send_whisper(2, "over the silent link"), timeout=30)
            assert silent.path == "relay"
            faults.drop_to_client = False
            sent = ["over the silent link"]
            # bounded (count, and each whisper's deadline): once B's acks on the link come
            # through again (after its retransmission backoff), A trusts the link again
            for i in range(200):
                sent.append(f"healed {i}")
                result = await asyncio.wait_for(a.send_whisper(2, sent[-1]), timeout=30)
                if result.path == "direct":
                    break
            else:
                raise AssertionError("never back on the direct path")
            received = await inbox.wait_for(len(sent))
            assert [m.content for m in received] == sent
            assert proxy.stats.dropped > 0
    finally:
        relay.close()


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4000, 4100))
@pytest.mark.parametrize("silent", ["forward", "backward"])
def test_many_seeds_one_way_silent_path(seed: int, silent: str) -> None:
    test_whisper_over_a_one_way_silent_path_is_acknowledged_by_the_relay(seed, silent)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5000, 5050))
@pytest.mark.parametrize("outage", [5.0, 45.0])
def test_many_seeds_return_to_direct(seed: int, outage: float) -> None:
    test_traffic_returns_to_direct_when_the_path_comes_back(seed, outage)
