"""The value-moving paths on real PostgreSQL (concurrent writers, row locks, READ COMMITTED).

Uses the throwaway-cluster fixture of ``tests/lobby/test_postgres.py`` (skipped when
the PostgreSQL binaries are missing): the trade hammer, and one trade carried on
from two lobbies sharing the database.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from lobby import MasterServer
from tests.lobby.services.conftest import game_settings, new_player
from tests.lobby.services.players import GamePlayer
from tests.lobby.services.test_trade import trade_hammer
from tests.lobby.services.test_trade_two_lobbies import one_trade_in_two_lobbies
from tests.lobby.support import FakeClock
from tests.lobby.test_postgres import postgres_url

__all__ = ["postgres_url"]


async def test_trade_hammer_on_postgres(
    tmp_path: Path, web: aiohttp.ClientSession, postgres_url: str
) -> None:
    settings = game_settings(tmp_path / "pg", database_url=postgres_url)
    async with MasterServer(settings=settings, clock=FakeClock(1_800_000_000.0)) as server:

        async def make(**kwargs: Any) -> GamePlayer:
            return await new_player(server.url, web, **kwargs)

        await trade_hammer(server, make)


async def test_one_trade_in_two_lobbies_on_postgres(
    tmp_path: Path, web: aiohttp.ClientSession, postgres_url: str
) -> None:
    await one_trade_in_two_lobbies(
        game_settings(tmp_path / "a", database_url=postgres_url),
        game_settings(tmp_path / "b", database_url=postgres_url),
        web,
    )
