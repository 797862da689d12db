"""Shared fixtures for every test package."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.loops import LOOPS

if TYPE_CHECKING:
    from tests.lobby.support import FakeClock


def pytest_report_header(config: pytest.Config) -> str | None:
    """Say up front that the default run leaves the ``slow`` tests out."""
    if "slow" in (config.option.markexpr or ""):
        return None
    return "tests marked slow (mesh soaks, ~700) are deselected; run them with -m slow"


# -- event loops ------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--loop",
        choices=sorted(LOOPS),
        default="asyncio",
        help="the event loop of async tests not marked to run on both (default: asyncio)",
    )


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every loop for tests marked ``asyncio(loop_factories=...)``, else the ``--loop`` one."""
    marker = item.get_closest_marker("asyncio")
    if marker is not None and "loop_factories" in marker.kwargs:
        return LOOPS
    name = config.getoption("--loop")
    return {name: LOOPS[name]}


# -- lobby (owned by the lobby core; kept small; imports the lobby only when used) ----------


@pytest.fixture
def lobby_clock() -> FakeClock:
    """The injectable wall clock of the ``lobby`` fixture (``.advance(seconds)``)."""
    from tests.lobby.support import FakeClock

    return FakeClock()


@pytest.fixture
async def lobby(tmp_path: Path, lobby_clock: FakeClock) -> AsyncIterator[Any]:
    """A started ``lobby.MasterServer`` on 127.0.0.1 port 0, SQLite in tmp_path, cheap hashing.

    ``lobby.url`` is its base URL; ``await lobby.run_maintenance()`` applies what
    ``lobby_clock`` made due (reconnect grace, session expiry).
    """
    from lobby import MasterServer
    from tests.lobby.support import fast_settings

    settings = fast_settings(tmp_path / "lobby-data")
    async with MasterServer(settings=settings, clock=lobby_clock) as server:
        yield server
