"""The real-LAN check: three namespaces on a private bridge, one ``python -m mesh`` each.

Each node process runs in its own network namespace, mDNS and QUIC bound to
that namespace's address, and finds the others over real multicast on the
bridge. A fourth node with the wrong passphrase is seen but never admitted; a
node killed with SIGKILL is noticed as gone. The namespaces, links and
processes are removed whatever happens (:class:`tests.mesh.netns.NetnsLan`).
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess

import pytest

from tests.mesh.lan_proc import PeerProcess
from tests.mesh.netns import NetnsLan, netns_unavailable_reason

_REASON = netns_unavailable_reason()
pytestmark = [pytest.mark.netns, pytest.mark.skipif(_REASON is not None, reason=_REASON or "")]


def _argv(name: str, passphrase: str, address: str) -> list[str]:
    return [
        "-m", "mesh", "--lan", "--json",
        "--name", name, "--passphrase", passphrase,
        "--interface", address, "--port", "0",
        "--heartbeat", "0.5", "--peer-timeout", "3",
    ]  # fmt: skip


async def test_three_namespaces_play_and_notice_departures() -> None:
    passphrase = f"netns-{secrets.token_hex(6)}"
    names = ["Aria", "Borin", "Cael", "Stranger"]
    peers: list[PeerProcess] = []
    async with NetnsLan(4) as lan:
        try:
            for index, node in enumerate(lan.nodes):
                secret = passphrase if index < 3 else "wrong passphrase"
                process = await lan.spawn(node, _argv(names[index], secret, node.address))
                peers.append(PeerProcess(process, f"{names[index]}@{node.namespace}"))
            await asyncio.gather(*(peer.start() for peer in peers))
            aria, borin, cael, stranger = peers
            for peer, node in zip(peers, lan.nodes, strict=True):
                assert peer.ready["endpoint"][0] == node.address
                assert peer.ready["interfaces"] == [node.address]

            # discovery across the bridge, then admission of exactly the group
            good = peers[:3]
            for peer in good:
                for other in good:
                    if other is not peer:
                        joined = await peer.wait_event("joined", peer_id=other.peer_id)
                        assert joined["name"] == other.ready["name"]
                found = await peer.wait_event("found", peer_id=stranger.peer_id)
                index = peers.index(stranger)
                assert found["endpoints"][0][0] == lan.nodes[index].address
                ignored = await peer.wait_event("ignored", peer_id=stranger.peer_id)
                assert ignored["reason"] == "another LAN group"

            # whisper, party chat, movement across namespaces
            await aria.send("/w Borin the shard is at the old mill")
            sent = await aria.wait_event("sent", kind="whisper")
            assert sent["path"] == "direct"
            whisper = await borin.wait_event("whisper", sender="Aria")
            assert whisper["content"] == "the shard is at the old mill"

            await cael.send("/p regroup at the gate")
            for peer in (aria, borin):
                party = await peer.wait_event("party", sender="Cael")
                assert party["content"] == "regroup at the gate"

            await borin.send("/pos 10 20 30")
            for peer in (aria, cael):
                moved = await peer.wait_event("position", sender="Borin")
                assert moved["position"] == [10.0, 20.0, 30.0]

            # the stranger saw everyone but was never admitted, nor admitted anyone
            for peer in peers:
                await stranger.wait_event(
                    "found", peer_id=peer.peer_id
                ) if peer is not stranger else None
            assert not stranger.matching("joined")
            for peer in good:
                assert not peer.matching("joined", peer_id=stranger.peer_id)
            assert not cael.matching("whisper")

            # a killed node (no goodbye) is noticed as gone by the others
            cael.process.kill()
            await cael.process.wait()
            for peer in (aria, borin):
                await peer.wait_event("lost", peer_id=cael.peer_id)
                left = await peer.wait_event("left", peer_id=cael.peer_id)
                assert (left["name"], left["reason"]) == ("Cael", "vanished from the LAN")

            # a node that quits says goodbye
            await borin.send("/quit")
            await asyncio.wait_for(borin.process.wait(), 20)
            assert borin.process.returncode == 0
            await aria.wait_event("left", peer_id=borin.peer_id)
        finally:
            for peer in peers:
                await peer.stop()


def _lab_namespaces(lan: NetnsLan) -> list[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in listing.stdout.splitlines() if lan.tag in line]


async def test_the_lab_leaves_nothing_behind_even_when_setup_or_the_test_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.mesh import netns

    # setup fails half-way: what was made is removed
    real_run_ip = netns.run_ip
    calls = 0

    def flaky(*args: str) -> str:
        nonlocal calls
        calls += 1
        if calls == 9:
            raise RuntimeError("injected failure")
        return real_run_ip(*args)

    monkeypatch.setattr(netns, "run_ip", flaky)
    broken = NetnsLan(2)
    with pytest.raises(RuntimeError, match="injected"):
        async with broken:
            pass
    assert _lab_namespaces(broken) == []
    monkeypatch.undo()

    # the test body fails with a process running: it is killed, the namespaces deleted
    lan = NetnsLan(1)
    with pytest.raises(AssertionError, match="test body failed"):
        async with lan:
            process = await lan.spawn(lan.nodes[0], ["-c", "import sys; sys.stdin.read()"])
            assert len(_lab_namespaces(lan)) == 2
            raise AssertionError("test body failed")
    assert process.returncode is not None
    assert _lab_namespaces(lan) == []
