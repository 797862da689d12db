"""The NAT lab (tests/netlab.py): STUN mappings, hole punching and a coturn relay, for real.

Home routers in network namespaces masquerade like the common home router
("cone": one mapping for every destination) or like a symmetric NAT
(``masquerade fully-random``: a new port per destination). The lobby and coturn
run in the "internet" namespace; every host process is ``tests.netlab_agent``
driving our STUN and TURN clients (mesh/stun_client.py, mesh/turn_client.py).
Needs root, ``nft`` (and ``turnserver`` for the relay case); skipped otherwise,
like the LAN namespace test.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from protocol.turn import turn_rest_credentials
from tests.netlab import Agent, NatLab, NatType, natlab_unavailable_reason

__all__: list[str] = []

_REASON = natlab_unavailable_reason()
pytestmark = [pytest.mark.netns, pytest.mark.skipif(_REASON is not None, reason=_REASON or "")]

LOBBY_PORT = 8888
SECOND_STUN_PORT = 3479
TURN_PORT = 3478
PUNCH_SECONDS = 3.0


async def _start_lobby(lab: NatLab, data_dir: Path) -> Agent:
    """``python -m lobby`` in the internet namespace: REST on 8888 and STUN on UDP 8888."""
    lobby = await lab.spawn(
        lab.internet,
        [
            "env",
            "SHARDS_ARGON2_TIME_COST=1",
            "SHARDS_ARGON2_MEMORY_COST=1024",
            "SHARDS_ARGON2_PARALLELISM=1",
            sys.executable,
            "-m",
            "lobby",
            "--host",
            lab.server_address,
            "--port",
            str(LOBBY_PORT),
            "--data-dir",
            str(data_dir),
        ],
        python=False,
        label="lobby",
    )
    assert (await lobby.read_text(30)).startswith("lobby listening on")
    return lobby


async def _stun_server(lab: NatLab, *ports: int) -> Agent:
    server = await lab.agent(lab.internet, "stun-server", lab.server_address, *map(str, ports))
    assert (await server.read())["ports"] == list(ports)
    return server


async def test_stun_mapping_through_cone_and_symmetric_nat(tmp_path: Path) -> None:
    async with NatLab() as lab:
        cone = lab.add_host(lab.add_router(NatType.CONE))
        symmetric = lab.add_host(lab.add_router(NatType.SYMMETRIC))
        await _start_lobby(lab, tmp_path / "lobby")
        await _stun_server(lab, SECOND_STUN_PORT)
        ports = [str(LOBBY_PORT), str(SECOND_STUN_PORT)]

        probe = await lab.agent(cone.namespace, "probe", cone.address, lab.server_address, *ports)
        seen = await probe.read()
        wan = cone.router.wan_address
        local_port = seen["local"][1]
        # one mapping for both destinations, and Linux kept the source port
        assert seen["mapped"] == [[wan, local_port], [wan, local_port]]
        assert seen["behaviour"] == "endpoint-independent"

        probe = await lab.agent(
            symmetric.namespace, "probe", symmetric.address, lab.server_address, *ports
        )
        seen = await probe.read()
        first, second = seen["mapped"]
        assert first[0] == second[0] == symmetric.router.wan_address
        assert first[1] != second[1]  # a new port per destination
        assert seen["behaviour"] == "endpoint-dependent"


async def _punch(
    lab: NatLab, a_ns: str, a_addr: str, b_ns: str, b_addr: str, *, lan: bool
) -> list[bool]:
    server = f"{lab.server_address}:{SECOND_STUN_PORT}"
    seconds = str(PUNCH_SECONDS)
    a = await lab.agent(a_ns, "punch", a_addr, server, seconds)
    b = await lab.agent(b_ns, "punch", b_addr, server, seconds)
    facts_a, facts_b = await a.read(), await b.read()
    key = "local" if lan else "mapped"
    # both learn the other's address at the same moment, as the lobby's pairing will do
    a.write(facts_b[key])
    b.write(facts_a[key])
    results = await asyncio.gather(a.read(), b.read())
    return [result["direct"] for result in results]


@pytest.mark.parametrize(
    ("nat_a", "nat_b", "direct"),
    [
        (NatType.CONE, NatType.CONE, True),
        (NatType.SYMMETRIC, NatType.SYMMETRIC, False),
    ],
)
async def test_udp_hole_punching(nat_a: NatType, nat_b: NatType, direct: bool) -> None:
    async with NatLab() as lab:
        a = lab.add_host(lab.add_router(nat_a))
        b = lab.add_host(lab.add_router(nat_b))
        await _stun_server(lab, SECOND_STUN_PORT)
        outcome = await _punch(lab, a.namespace, a.address, b.namespace, b.address, lan=False)
        assert outcome == [direct, direct]


async def test_shared_nat_reaches_by_lan_address_and_a_cut_path_is_dead() -> None:
    async with NatLab() as lab:
        router = lab.add_router(NatType.CONE)
        a, b = lab.add_host(router), lab.add_host(router)
        other = lab.add_host(lab.add_router(NatType.CONE))
        await _stun_server(lab, SECOND_STUN_PORT)
        # behind one NAT the peers see the same public address; their LAN addresses connect
        outcome = await _punch(lab, a.namespace, a.address, b.namespace, b.address, lan=True)
        assert outcome == [True, True]
        # a router rule cuts a path that punches fine otherwise, and restoring it heals it
        lab.cut(router, other.router.wan_address)
        outcome = await _punch(
            lab, a.namespace, a.address, other.namespace, other.address, lan=False
        )
        assert outcome == [False, False]
        lab.restore(router, other.router.wan_address)
        outcome = await _punch(
            lab, a.namespace, a.address, other.namespace, other.address, lan=False
        )
        assert outcome == [True, True]


@pytest.mark.skipif(
    natlab_unavailable_reason(turn=True) is not None,
    reason=natlab_unavailable_reason(turn=True) or "",
)
async def test_coturn_relays_both_ways_between_symmetric_nats(tmp_path: Path) -> None:
    secret = os.urandom(16).hex()
    count = 10
    async with NatLab() as lab:
        a = lab.add_host(lab.add_router(NatType.SYMMETRIC))
        b = lab.add_host(lab.add_router(NatType.SYMMETRIC))
        ip = lab.server_address
        await lab.coturn(secret, TURN_PORT, tmp_path)
        await _until_stun_answers(lab, f"{ip}", TURN_PORT)

        now = time.time()
        agents = []
        for host, name in ((a, "peer-a"), (b, "peer-b")):
            creds = turn_rest_credentials(secret, name, now=now, ttl=600)
            agents.append(
                await lab.agent(
                    host.namespace,
                    "turn",
                    host.address,
                    f"{ip}:{TURN_PORT}",
                    creds.username,
                    creds.password,
                    str(count),
                )  # fmt: skip
            )
        agent_a, agent_b = agents
        alloc_a, alloc_b = await agent_a.read(), await agent_b.read()
        for alloc, host in ((alloc_a, a), (alloc_b, b)):
            assert alloc["relayed"][0] == ip
            assert alloc["mapped"][0] == host.router.wan_address
        agent_a.write(alloc_b["relayed"])
        agent_b.write(alloc_a["relayed"])
        permitted = {"permitted": True}
        assert (await agent_a.read(), await agent_b.read()) == (permitted, permitted)
        agent_a.write("go")
        agent_b.write("go")
        got_a, got_b = await agent_a.read(), await agent_b.read()
        # half came as Data indications, half as ChannelData: all of it, each once
        assert sorted(got_a["received"]) == sorted(f"peer-b {i}" for i in range(count))
        assert sorted(got_b["received"]) == sorted(f"peer-a {i}" for i in range(count))
        assert (await agent_a.wait(), await agent_b.wait()) == (0, 0)


async def _until_stun_answers(lab: NatLab, host: str, port: int, attempts: int = 10) -> None:
    """Wait until ``host:port`` answers a STUN Binding (coturn prints no 'ready' line)."""
    for _ in range(attempts):
        probe = await lab.agent(lab.internet, "probe", lab.server_address, host, str(port))
        if await probe.wait(30) == 0:
            return
    raise AssertionError(f"nothing answers STUN on {host}:{port}")


_CRASHING_LAB = """
import os, signal
from tests.netlab import NatLab
lab = NatLab()
lab.create()
lab.add_host(lab.add_router("symmetric"))
print(lab.tag, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _host_links() -> str:
    listing = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    return "\n".join(sorted(line.split("link/")[0] for line in listing.stdout.splitlines()))


def _namespaces() -> set[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in listing.stdout.splitlines() if line.split()}


def test_lab_leaves_nothing_behind_even_after_a_crash() -> None:
    before = _host_links()
    crashed = subprocess.run(
        [sys.executable, "-c", _CRASHING_LAB],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert crashed.returncode == -9, crashed.stderr
    tag = crashed.stdout.strip()
    assert {name for name in _namespaces() if name.startswith(tag)}  # left behind
    with NatLab() as lab:
        assert not {name for name in _namespaces() if name.startswith(tag)}  # cleaned
        lab.add_host(lab.add_router(NatType.CONE))
        mine = {name for name in _namespaces() if name.startswith(lab.tag)}
        assert len(mine) == 3
    assert not {name for name in _namespaces() if name.startswith(lab.tag)}
    assert _host_links() == before  # the host's own interfaces were never touched
