"""``ctx.services``: the services collected at start, their typed roles, and when one is down."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import aiohttp
import pytest

from lobby import MasterServer
from lobby.context import ContextSlot, LobbyContext
from lobby.presence import Presence
from lobby.services import CombatService, DirectoryService, PartyService, WorldService
from protocol.errors import ConfigError, ErrorCode, LobbyError
from tests.lobby.services.conftest import game_settings, new_player
from tests.lobby.support import FakeClock


class QuietDirectory:
    """A directory of the operator's own: no relay, counts whom the lobby asks it to introduce."""

    name = "directory"

    def __init__(self) -> None:
        self.relayed_messages = 41
        self.introduced: list[int] = []

    async def setup(self, ctx: LobbyContext) -> None:
        pass  # it does not publish itself anywhere: the lobby collects it

    async def close(self) -> None:
        pass

    def introduce(self, presence: Presence) -> int:
        assert presence.character is not None
        self.introduced.append(presence.character.id)
        return 0

    def introduce_members(self, character_ids: Iterable[int], *, focus: int | None = None) -> int:
        return 0

    async def reselected(self, session_id: int) -> int:
        return 0


class NotCombat:
    name = "combat"

    async def setup(self, ctx: LobbyContext) -> None:
        pass

    async def close(self) -> None:
        pass


async def test_the_game_services_fill_their_roles(server: MasterServer) -> None:
    services = server.ctx.services
    assert services.directory is services.require(DirectoryService)
    assert services.parties is services.require(PartyService)
    assert services.combat is services.require(CombatService)
    assert services.all[0].name == "chat"
    with pytest.raises(LobbyError) as exc:
        services.require(QuietDirectory)
    assert exc.value.code == ErrorCode.UNAVAILABLE


async def test_a_passed_service_takes_its_role(
    tmp_path: Path, game_clock: FakeClock, web: aiohttp.ClientSession
) -> None:
    directory = QuietDirectory()
    settings = game_settings(tmp_path / "data")
    async with MasterServer(settings=settings, clock=game_clock, services=[directory]) as lobby:
        assert lobby.ctx.services.directory is directory
        player = await new_player(lobby.url, web)
        await player.request("move", to_location_id=2)
        assert directory.introduced == [player.id]
        status, body = await player.rest("GET", "/api/status")
        assert status == 200 and body["relayed_messages"] == 41


async def test_a_service_named_for_a_role_must_fill_it(
    tmp_path: Path, game_clock: FakeClock
) -> None:
    settings = game_settings(tmp_path / "data")
    lobby = MasterServer(settings=settings, clock=game_clock, services=[NotCombat()])
    with pytest.raises(ConfigError, match="'combat' \\(NotCombat\\) does not provide CombatRoster"):
        await lobby.start()
    with pytest.raises(LobbyError, match="not started"):
        _ = lobby.ctx


async def test_a_stopped_service_is_unavailable(tmp_path: Path, game_clock: FakeClock) -> None:
    async with MasterServer(settings=game_settings(tmp_path / "data"), clock=game_clock) as lobby:
        world = lobby.ctx.services.require(WorldService)
    with pytest.raises(LobbyError, match="the world service is not running") as exc:
        await world.tick()
    assert exc.value.code == ErrorCode.UNAVAILABLE


def test_context_slot_states() -> None:
    slot = ContextSlot("the test service")
    assert slot.current is None and slot.detach() is None
    with pytest.raises(LobbyError, match="the test service is not running") as exc:
        _ = slot.ctx
    assert exc.value.code == ErrorCode.UNAVAILABLE
