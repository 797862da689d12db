"""The mDNS instance table cannot be pinned by junk advertisements (127.0.0.1 only).

Fake instances are bare PTR records sent from a second zeroconf on loopback:
they never resolve. Time is the discovery's injected clock, never a sleep.
Each test uses its own service type, so nodes of concurrent runs on this
host's loopback never take table slots.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from zeroconf import DNSOutgoing, DNSPointer
from zeroconf.asyncio import AsyncZeroconf
from zeroconf.const import _CLASS_IN, _FLAGS_AA, _FLAGS_QR_RESPONSE, _TYPE_PTR

from mesh.discovery import MdnsDiscovery
from tests.mesh.discovery.helpers import LOOPBACK, make_node, new_tag, wait_for_view

FAKES = 4


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _watch_table(node: MdnsDiscovery) -> asyncio.Event:
    """An event set whenever the node adds or forgets an instance (a spy, no fault)."""
    changed = asyncio.Event()
    admit, forget = node._admit, node._forget

    def spy_admit(key: str, name: str):  # type: ignore[no-untyped-def]
        result = admit(key, name)
        changed.set()
        return result

    def spy_forget(instance):  # type: ignore[no-untyped-def]
        forget(instance)
        changed.set()

    node._admit = spy_admit  # type: ignore[method-assign]
    node._forget = spy_forget  # type: ignore[method-assign]
    return changed


async def _until(
    condition: Callable[[], bool], changed: asyncio.Event, within: float = 20.0
) -> None:
    async def wait() -> None:
        while not condition():
            changed.clear()
            await changed.wait()

    await asyncio.wait_for(wait(), within)


def _service_type() -> str:
    return f"_s{new_tag()[:10]}._udp.local."


def _fake_names(service_type: str, count: int) -> list[str]:
    return [f"fake{i}-{new_tag()}.{service_type}" for i in range(count)]


def _advertise(azc: AsyncZeroconf, service_type: str, names: list[str]) -> None:
    out = DNSOutgoing(_FLAGS_QR_RESPONSE | _FLAGS_AA)
    for name in names:
        out.add_answer_at_time(DNSPointer(service_type, _TYPE_PTR, _CLASS_IN, 4500, name), 0)
    azc.zeroconf.async_send(out)


async def _fill_with_fakes(node: MdnsDiscovery, changed: asyncio.Event) -> set[str]:
    """Advertise FAKES bare PTRs until the node holds them all (at most 20 sends)."""
    names = _fake_names(node.service_type, FAKES)
    fakes = {name.lower() for name in names}
    azc = AsyncZeroconf(interfaces=LOOPBACK)
    try:
        await azc.zeroconf.async_wait_for_start()
        for _ in range(20):
            # multicast on loopback may drop one; send again
            _advertise(azc, node.service_type, names)
            try:
                await _until(lambda: fakes <= node.instances, changed, within=1.0)
            except TimeoutError:
                continue
            return fakes
        raise AssertionError("the fake advertisements never arrived")
    finally:
        await azc.async_close()


@dataclass
class _FullTable:
    """Alice, started, her table full of fakes that never resolve; Bob, not started yet."""

    a: MdnsDiscovery
    b: MdnsDiscovery
    clock: _Clock
    changed: asyncio.Event
    fakes: set[str]


@asynccontextmanager
async def _full_table() -> AsyncIterator[_FullTable]:
    tag, clock, kind = new_tag(), _Clock(), _service_type()
    a = make_node("alice", tag, max_instances=FAKES, clock=clock, heartbeat=0.2, service_type=kind)
    b = make_node("bob", tag, service_type=kind)
    changed = _watch_table(a)
    try:
        await a.start()
        yield _FullTable(a, b, clock, changed, await _fill_with_fakes(a, changed))
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_unresolvable_instances_age_out() -> None:
    async with _full_table() as t:
        assert len(t.a.instances) == FAKES  # full
        t.clock.now += t.a.unresolved_timeout + 1
        await _until(lambda: not t.fakes & t.a.instances, t.changed)
        await t.b.start()
        await wait_for_view(t.a, lambda peers: t.b.peer_id in peers)


async def test_full_table_evicts_the_oldest_dead_instance() -> None:
    # frozen clock: nothing ever ages out, only eviction can make room
    async with _full_table() as t:
        await t.b.start()
        await wait_for_view(t.a, lambda peers: t.b.peer_id in peers)
        assert len(t.a.instances) <= FAKES
        assert len(t.fakes - t.a.instances) >= 1


async def test_silent_peer_is_forgotten_and_comes_back() -> None:
    tag, clock, kind = new_tag(), _Clock(), _service_type()
    a = make_node("alice", tag, clock=clock, heartbeat=0.2, service_type=kind, peer_timeout=5.0)
    b = make_node("bob", tag, heartbeat=30.0, service_type=kind)
    changed = _watch_table(a)
    try:
        await asyncio.gather(a.start(), b.start())
        await wait_for_view(a, lambda peers: b.peer_id in peers)
        key = b.instance_name.lower()
        clock.now += a.peer_timeout + 1
        await wait_for_view(a, lambda peers: b.peer_id not in peers)
        await _until(lambda: key not in a.instances, changed)
        # bob's next announcement (a PTR) brings him back although the browser knew him
        # (a PTR alone: a copy of bob's last announcement could be dropped as a duplicate)
        assert b._azc is not None
        _advertise(b._azc, kind, [b.instance_name])
        await wait_for_view(a, lambda peers: b.peer_id in peers)
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_off_subnet_addresses_dropped_and_one_id_merged() -> None:
    tag, kind = new_tag(), _service_type()
    a = make_node("alice", tag, service_type=kind)
    shared = make_node("real", tag, service_type=kind)
    # an impostor copying the real peer's id, and a third party's address
    copy = make_node(
        "fake", tag, service_type=kind, peer_id=shared.peer_id, advertise=["192.0.2.7", "127.0.0.1"]
    )
    both = {("127.0.0.1", shared.port), ("127.0.0.1", copy.port)}
    try:
        await asyncio.gather(a.start(), shared.start(), copy.start())
        view = await wait_for_view(
            a,
            lambda peers: shared.peer_id in peers and set(peers[shared.peer_id].endpoints) == both,
        )
        assert len(view[shared.peer_id].endpoints) == 2  # 192.0.2.7 is off 127.0.0.0/8
        await copy.close()  # the impostor leaves: the real endpoint stays
        await wait_for_view(
            a,
            lambda peers: (
                shared.peer_id in peers
                and peers[shared.peer_id].endpoints == (("127.0.0.1", shared.port),)
            ),
        )
    finally:
        await asyncio.gather(a.close(), shared.close(), copy.close())
