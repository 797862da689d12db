"""mDNS discovery on 127.0.0.1 only: find, resolve, goodbye, silence, bad adverts."""

from __future__ import annotations

import asyncio
import socket

import pytest
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from mesh.discovery import SERVICE_TYPE, MdnsDiscovery, PeerFound, PeerLost
from mesh.discovery.mdns import lan_interface_addresses, parse_interfaces
from protocol.errors import DiscoveryError
from protocol.version import PROTOCOL_VERSION
from tests.mesh.discovery.helpers import LOOPBACK, make_node, new_peer_id, new_tag, wait_for_view


def _same_group(tag: str, count: int):  # type: ignore[no-untyped-def]
    return lambda peers: sum(1 for p in peers.values() if p.group_tag == tag) >= count


async def test_three_nodes_find_each_other() -> None:
    tag = new_tag()
    nodes = [make_node(f"hero{i}", tag) for i in range(3)]
    try:
        await asyncio.gather(*(node.start() for node in nodes))
        for node in nodes:
            view = await wait_for_view(node, _same_group(tag, 2))
            others = {n.peer_id for n in nodes if n is not node}
            assert others <= set(view)
            assert node.peer_id not in view
            for other in nodes:
                if other is node:
                    continue
                peer = view[other.peer_id]
                assert peer.name == other.name
                assert peer.version == PROTOCOL_VERSION
                assert peer.group_tag == tag
                assert peer.endpoints == (("127.0.0.1", other.port),)
                assert peer.source == "mdns"
    finally:
        await asyncio.gather(*(node.close() for node in nodes))


async def test_close_says_goodbye() -> None:
    tag = new_tag()
    a, b = make_node("alice", tag, heartbeat=30.0, peer_timeout=600.0), make_node("bob", tag)
    try:
        await asyncio.gather(a.start(), b.start())
        await wait_for_view(a, lambda peers: b.peer_id in peers)
        lost = asyncio.get_running_loop().create_future()
        a.add_listener(
            lambda ev: (
                lost.set_result(ev)
                if isinstance(ev, PeerLost) and ev.peer_id == b.peer_id and not lost.done()
                else None
            )
        )
        await b.close()
        # the heartbeat timeout is ten minutes: only the goodbye can explain this
        event = await asyncio.wait_for(lost, 10)
        assert event == PeerLost(b.peer_id, "mdns")
        assert b.peer_id not in a.peers
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_other_group_and_version_are_reported_not_judged() -> None:
    tag = new_tag()
    a = make_node("alice", tag)
    stranger = make_node("mallory", new_tag(), version="9.0")
    try:
        await asyncio.gather(a.start(), stranger.start())
        view = await wait_for_view(a, lambda peers: stranger.peer_id in peers)
        assert view[stranger.peer_id].group_tag == stranger.group_tag
        assert view[stranger.peer_id].version == "9.0"
    finally:
        await asyncio.gather(a.close(), stranger.close())


async def test_events_iterator_replays_known_peers_and_ends_on_close() -> None:
    tag = new_tag()
    a, b = make_node("alice", tag), make_node("bob", tag)
    try:
        await asyncio.gather(a.start(), b.start())
        await wait_for_view(a, lambda peers: b.peer_id in peers)
        events = a.events()
        first = await asyncio.wait_for(anext(events), 5)
        assert isinstance(first, PeerFound)
        await a.close()
        rest = await asyncio.wait_for(_drain(events), 5)
        assert all(isinstance(e, PeerFound | PeerLost) for e in rest)
        with pytest.raises(DiscoveryError):
            await a.start()
    finally:
        await asyncio.gather(a.close(), b.close())


async def _drain(events):  # type: ignore[no-untyped-def]
    return [e async for e in events]


async def test_malformed_advertisement_is_ignored() -> None:
    tag = new_tag()
    a = make_node("alice", tag)
    azc = AsyncZeroconf(interfaces=LOOPBACK, ip_version=IPVersion.V4Only)
    bad_id = "x" * 200
    infos = [
        AsyncServiceInfo(
            SERVICE_TYPE,
            f"bad{i}-{new_tag()}.{SERVICE_TYPE}",
            port=4000,
            properties=props,
            server=f"bad{i}-{new_tag()}.local.",
            parsed_addresses=["127.0.0.1"],
        )
        for i, props in enumerate(
            [{"v": "1.0", "n": "noid", "g": tag}, {"v": "1.0", "id": bad_id, "n": "long", "g": tag}]
        )
    ]
    good = make_node("bob", tag)
    try:
        await a.start()
        for info in infos:
            await azc.async_register_service(info)
        await good.start()
        # bob registered after the bad ones: once he is seen, they were seen too
        view = await wait_for_view(a, lambda peers: good.peer_id in peers)
        assert set(view) == {good.peer_id} | {p for p, f in view.items() if f.group_tag != tag}
        assert bad_id not in view
    finally:
        await asyncio.gather(a.close(), good.close())
        await azc.async_close()


async def test_zeroconf_failure_becomes_discovery_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise OSError(98, "Address already in use")

    monkeypatch.setattr("mesh.discovery.mdns.AsyncZeroconf", broken)
    node = make_node("alice", new_tag())
    with pytest.raises(DiscoveryError, match="127.0.0.1"):
        await node.start()
    await node.close()


def test_interfaces_are_explicit_unicast_ipv4() -> None:
    assert parse_interfaces(["127.0.0.1", "127.0.0.1"]) == ["127.0.0.1"]
    for bad in (
        ["0.0.0.0"],  # noqa: S104
        ["224.0.0.251"],
        ["::1"],
        ["eth0"],
        [],
    ):
        with pytest.raises(DiscoveryError):
            parse_interfaces(bad)
    with pytest.raises(DiscoveryError):
        MdnsDiscovery(peer_id=new_peer_id(), name="x", port=1, interfaces=["0.0.0.0"])  # noqa: S104 mdns-guard: never started
    with pytest.raises(DiscoveryError):
        MdnsDiscovery(peer_id=new_peer_id(), name="x", port=0, interfaces=LOOPBACK)


def test_lan_default_excludes_loopback() -> None:
    # only lists addresses; nothing is bound
    for address in lan_interface_addresses():
        assert not address.startswith("127.")
        socket.inet_aton(address)


async def test_a_killed_peer_is_noticed_by_silence(tmp_path: object) -> None:
    import sys

    tag = new_tag()
    a = make_node("alice", tag)
    peer_id = new_peer_id()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.mesh.discovery.mdns_peer",
        "--interface",
        "127.0.0.1",
        "--peer-id",
        peer_id,
        "--tag",
        tag,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        await a.start()
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert line.strip() == b"READY"
        await wait_for_view(a, lambda peers: peer_id in peers)
        proc.kill()  # SIGKILL: no goodbye is ever sent
        await proc.wait()
        await wait_for_view(a, lambda peers: peer_id not in peers, within=20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await a.close()


def test_guard_stops_multicast_on_a_real_interface(multicast_guard: list[str]) -> None:
    from tests.mesh.discovery.guard import MulticastGuardError

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        with pytest.raises(MulticastGuardError):
            sock.setsockopt(
                socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("192.0.2.2")
            )
        with pytest.raises(MulticastGuardError):
            sock.setsockopt(
                socket.IPPROTO_IP,
                socket.IP_ADD_MEMBERSHIP,
                socket.inet_aton("224.0.0.251") + socket.inet_aton("0.0.0.0"),  # noqa: S104
            )
        with pytest.raises(MulticastGuardError):
            sock.sendto(b"x", ("224.0.0.251", 5353))
    assert len(multicast_guard) == 3
    multicast_guard.clear()
