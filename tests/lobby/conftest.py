"""Lobby test fixtures: REST clients and players on the shared ``lobby`` fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from lobby import MasterServer
from tests.lobby.support import ApiClient, FakeClock


@pytest.fixture
def clock(lobby_clock: FakeClock) -> FakeClock:
    """The ``lobby`` fixture's clock (``lobby`` itself comes from tests/conftest.py)."""
    return lobby_clock


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def make_client(lobby: MasterServer, http: aiohttp.ClientSession) -> Callable[[], ApiClient]:
    return lambda: ApiClient(lobby.url, http)


@pytest.fixture
def player(
    make_client: Callable[[], ApiClient],
) -> Callable[..., Awaitable[tuple[ApiClient, dict[str, object]]]]:
    """``await player(name, faction, cls)``: register, login, create and select a character."""

    async def make(
        username: str,
        faction: str = "Crimson Covenant",
        character_class: str = "Warrior",
        character_name: str | None = None,
    ) -> tuple[ApiClient, dict[str, object]]:
        client = make_client()
        return client, await client.play(username, faction, character_class, character_name)

    return make
