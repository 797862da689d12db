"""Fixtures of the game-service tests: a real lobby on 127.0.0.1:0, SQLite in tmp_path."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lobby import MasterServer
from tests.lobby.services.players import GamePlayer
from tests.lobby.support import FakeClock, fast_settings, signed_up

MakePlayer = Callable[..., Awaitable[GamePlayer]]

_names = itertools.count(1)


def game_settings(data_dir: Path, **overrides: Any) -> Any:
    """Fast settings plus generous rate limits (tests drive many messages quickly)."""
    values: dict[str, Any] = {
        "rest_rate_per_account": 10_000,
        "rest_burst_per_account": 10_000,
        "ws_message_rate": 10_000,
        "ws_message_burst": 10_000,
        "reconnect_grace": 0,
        "session_ttl": 10_000_000.0,
        "ws_idle_timeout": 10_000_000.0,
    }
    values.update(overrides)
    return fast_settings(data_dir, **values)


@pytest.fixture
def game_clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)


@pytest.fixture
async def server(tmp_path: Path, game_clock: FakeClock) -> AsyncIterator[MasterServer]:
    async with MasterServer(settings=game_settings(tmp_path / "data"), clock=game_clock) as s:
        yield s


@pytest.fixture
async def web() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def new_player(
    url: str,
    http: aiohttp.ClientSession,
    *,
    faction: str = "Crimson Covenant",
    character_class: str = "Warrior",
    connect: bool = True,
    select: dict[str, Any] | None = None,
    name: str | None = None,
) -> GamePlayer:
    n = next(_names)
    username = f"user{n}"
    client = await signed_up(url, http, username)
    character = await client.create_character(name or f"Hero{n}", faction, character_class)
    selected = await client.select(int(character["id"]), **(select or {}))
    player = GamePlayer(client, selected["character"], selected)
    player.username = username
    if connect:
        await player.connect()
    return player


@pytest.fixture
def make_player(server: MasterServer, web: aiohttp.ClientSession) -> MakePlayer:
    async def make(**kwargs: Any) -> GamePlayer:
        return await new_player(server.url, web, **kwargs)

    return make
