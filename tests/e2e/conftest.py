"""Fixtures for end-to-end tests: a real lobby (real clock) and real NetworkClients.

Everything runs on 127.0.0.1 with port 0: the lobby's aiohttp server, and each
client's PeerNode UDP socket.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from lobby import MasterServer
from lobby.services.directory import DirectoryService
from mesh import MeshConfig, NetworkClient, ReconnectPolicy
from tests.inbox import Inbox
from tests.lobby.support import fast_settings

__all__ = ["ClientFactory", "Inbox", "fast_mesh", "relayed"]

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
