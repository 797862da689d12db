"""Fixtures for end-to-end tests: a real lobby (real clock) and real NetworkClients.

Everything runs on 127.0.0.1 with port 0: the lobby's aiohttp server, and each
client's PeerNode UDP socket. The NAT-lab fixtures (``natlab``, ``natlab_turn``)
are the exception: a lab of network namespaces (:class:`tests.netlab.NatLab`)
with ``python -m lobby`` in its internet namespace, shared by a whole module
(mark it ``pytest.mark.asyncio(loop_scope="module")``); each test adds its own
routers and hosts, and the lab removes every namespace when the module ends,
whatever failed.
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
from lobby.services.directory import DirectoryService
from mesh import MeshConfig, NetworkClient, ReconnectPolicy
from tests.inbox import Inbox
from tests.lobby.support import fast_settings
from tests.netlab import LabLobby, NatLab, natlab_unavailable_reason

__all__ = ["ClientFactory", "Inbox", "LabWithLobby", "fast_mesh", "relayed"]

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


def relayed(server: MasterServer) -> int:
    """The lobby's relay counter (what ``/api/status`` reports as ``relayed_messages``)."""
    return int(server.ctx.services.require(DirectoryService).relayed_messages)


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
async def master(tmp_path: Path) -> AsyncIterator[MasterServer]:
    """A real lobby on 127.0.0.1:0 with the wall clock and a SQLite file in tmp_path."""
    settings = fast_settings(tmp_path / "lobby-data", chat_burst=1000.0, chat_rate=1000.0)
    async with MasterServer(settings=settings) as server:
        yield server


@pytest.fixture
async def make_client(master: MasterServer) -> AsyncIterator[ClientFactory]:
    """``await make_client(name, **client_kwargs)``: registered, logged in, character selected.

    ``select=False`` stops after login; ``faction`` / ``location`` choose the character.
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
        client = NetworkClient(master.url, **kwargs)
        clients.append(client)
        await client.connect(f"user_{name.lower()}", "password123", register=True)
        if select:
            character = await client.create_character(name, faction, "Warrior")
            await client.select_character(int(character["id"]))
        return client

    yield factory
    for client in reversed(clients):
        await client.disconnect()


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
