"""Fixtures for end-to-end tests: a real lobby (real clock) and real NetworkClients.

Everything runs on 127.0.0.1 with port 0: the lobby's aiohttp server, and each
client's PeerNode UDP socket. The lobby is a :class:`~tests.e2e.deployments.Deployment`:
each test taking ``deployment`` or ``make_client`` runs on one in-process lobby and,
marked ``cluster``, on three lobby processes behind HAProxy on PostgreSQL + Redis
(``tests/e2e/deployments.py``). The default run leaves the cluster runs out; run
them with ``pytest tests/e2e -m cluster`` (``.ci/run`` does).

The NAT-lab fixtures (``natlab``, ``natlab_turn``) are the exception: a lab of
network namespaces (:class:`tests.netlab.NatLab`) with ``python -m lobby`` in its
internet namespace, shared by a whole module (mark it
``pytest.mark.asyncio(loop_scope="module")``); each test adds its own routers and
hosts, and the lab removes every namespace when the module ends, whatever failed.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from lobby import MasterServer
from mesh import MeshConfig, NetworkClient, ReconnectPolicy
from tests.e2e.deployments import ClusterServers, Deployment, OneProcess, cluster_env
from tests.inbox import Inbox
from tests.lobby.cluster.procs import RedisServer, missing_programs
from tests.lobby.support import fast_settings
from tests.lobby.test_postgres import throwaway_postgres
from tests.netlab import LabLobby, NatLab, natlab_unavailable_reason
from tests.optin import OptInMark

__all__ = ["ClientFactory", "Deployment", "Inbox", "LabWithLobby", "fast_mesh", "relayed"]

LabWithLobby = tuple[NatLab, LabLobby]

ClientFactory = Callable[..., Awaitable[NetworkClient]]


def fast_mesh(**overrides: Any) -> MeshConfig:
    """Node tunables for tests: short dial timeout and relay resend interval."""
    values: dict[str, Any] = {
        "dial_timeout": 1.0,
        "send_timeout": 20.0,
        "relay_resend_interval": 0.5,
        "redial_backoff": 60.0,
    }
    values.update(overrides)
    return MeshConfig(**values)


async def relayed(deployment: Deployment) -> int:
    """RELAY envelopes the lobby forwarded, over all its processes (``relayed_messages``)."""
    return sum(int(status["relayed_messages"]) for status in await deployment.statuses())


@pytest.fixture
def lobby_settings() -> dict[str, Any]:
    """The e2e lobby's settings beyond ``fast_settings`` (a module may override it)."""
    return {"chat_burst": 1000.0, "chat_rate": 1000.0}


@pytest.fixture(scope="session")
def cluster_servers() -> Iterator[ClusterServers]:
    """PostgreSQL and Redis for every cluster run of the session (each test's cluster
    has a database and a key prefix of its own)."""
    missing = missing_programs()
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (Debian packages redis-server, haproxy)")
    with throwaway_postgres() as postgres:
        redis = RedisServer().start()
        try:
            yield ClusterServers(postgres, redis)
        finally:
            redis.stop()


@pytest.fixture(params=["one", pytest.param("cluster", marks=pytest.mark.cluster)])
async def deployment(
    request: pytest.FixtureRequest, tmp_path: Path, lobby_settings: dict[str, Any]
) -> AsyncIterator[Deployment]:
    """The lobby of the test: in this process (``one``) or three processes (``cluster``)."""
    if request.param == "one":
        settings = fast_settings(tmp_path / "lobby-data", **lobby_settings)
        async with MasterServer(settings=settings) as server:
            yield OneProcess(server)
        return
    marker = request.node.get_closest_marker("one_process")
    if marker is not None:
        pytest.skip(f"one lobby process only: {marker.args[0]}")
    servers: ClusterServers = request.getfixturevalue("cluster_servers")
    async with servers.cluster(cluster_env(lobby_settings)) as cluster:
        yield cluster


@pytest.fixture
def dead_endpoint() -> Iterator[str]:
    """A loopback UDP port bound by a socket that never answers (``host:port``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        host, port = sock.getsockname()
        yield f"{host}:{port}"
    finally:
        sock.close()


@pytest.fixture
def master(deployment: Deployment) -> MasterServer:
    """The in-process lobby of the ``one`` deployment (tests that read its memory or
    restart it; their cluster run is skipped by their ``one_process`` mark)."""
    if isinstance(deployment, OneProcess):
        return deployment.server
    pytest.fail("this test reads the lobby in its own process: mark it one_process(reason)")


@pytest.fixture
async def make_client(deployment: Deployment) -> AsyncIterator[ClientFactory]:
    """``await make_client(name, **client_kwargs)``: registered, logged in, character selected.

    ``select=False`` stops after login; ``faction`` / ``location`` choose the character.
    On a cluster the clients are spread: the ``k``-th made is on process ``k mod 3``.
    """
    clients: list[NetworkClient] = []
    seeds = itertools.count(1)

    async def factory(
        name: str,
        *,
        faction: str = "Crimson Covenant",
        select: bool = True,
        **kwargs: Any,
    ) -> NetworkClient:
        kwargs.setdefault("p2p_port", 0)
        kwargs.setdefault("mesh_config", fast_mesh())
        kwargs.setdefault(
            "reconnect", ReconnectPolicy(initial_delay=0.05, max_delay=0.5, seed=next(seeds))
        )
        client = NetworkClient(deployment.url_for(len(clients)), **kwargs)
        clients.append(client)
        await client.connect(f"user_{name.lower()}", "password123", register=True)
        if select:
            character = await client.create_character(name, faction, "Warrior")
            await client.select_character(int(character["id"]))
        return client

    yield factory
    for client in reversed(clients):
        await client.disconnect()


_CLUSTER = OptInMark(
    "cluster",
    Path(__file__).parent,
    "{n} end-to-end tests' runs on a 3-process cluster were deselected: "
    "run them with `pytest tests/e2e -m cluster` (.ci/run does)",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The e2e tests' cluster runs (each starts three lobby processes) run only when asked
    for with ``-m cluster``; the terminal summary says how many were left out."""
    _CLUSTER.deselect(config, items)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    _CLUSTER.summarize(terminalreporter, config)


async def _lab_with_lobby(data_dir: Path, *, turn: bool) -> AsyncIterator[LabWithLobby]:
    reason = natlab_unavailable_reason(turn=turn)
    if reason is not None:
        pytest.skip(reason)
    async with NatLab() as lab:
        lobby = await lab.lobby(data_dir, turn=turn)
        yield lab, lobby


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def natlab(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LabWithLobby]:
    """A NAT lab with the lobby (STUN on its port) in its internet namespace, per module."""
    async for value in _lab_with_lobby(tmp_path_factory.mktemp("natlab"), turn=False):
        yield value


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def natlab_turn(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LabWithLobby]:
    """:func:`natlab` with coturn beside the lobby, which issues its credentials."""
    async for value in _lab_with_lobby(tmp_path_factory.mktemp("natlab-turn"), turn=True):
        yield value
