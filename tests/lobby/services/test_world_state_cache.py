"""``GET /api/world/state`` is served from a cache that never shows a stale world."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lobby import MasterServer
from lobby.game.travel import path_between
from lobby.services.world import WorldService
from tests.lobby.services.conftest import MakePlayer
from tests.lobby.services.players import GamePlayer
from tests.lobby.support import FakeClock


async def _state(player: GamePlayer) -> dict[str, Any]:
    status, body = await player.rest("GET", "/api/world/state")
    assert status == 200
    return dict(body)


async def test_capture_and_cooldown_end_show_at_once(
    server: MasterServer, make_player: MakePlayer, game_clock: FakeClock
) -> None:
    world = server.ctx.services.require(WorldService)
    red = await make_player(faction="Crimson Covenant")
    first = await _state(red)
    assert await _state(red) == first  # served again from the cache
    cached = world.state_body()
    assert (await _state(red)) == first and world.state_body() is cached

    for loc in (2, 5):
        await red.request("move", to_location_id=loc)
    assert await _state(red) == first  # moving changes nothing shown
    await red.request("shard_capture", shard_id=1)
    after = await _state(red)
    phoenix = next(s for s in after["shards"] if s["shard_id"] == 1)
    assert phoenix["owner"] == "Crimson Covenant" and phoenix["captured_by"] == red.id
    assert phoenix["capturable_at"] is not None
    assert after["faction_shards"]["Crimson Covenant"] == 1
    assert after["recent_events"][0]["event_type"] == "shard_captured"

    # the cooldown ends by the clock alone: no event, yet the answer changes
    game_clock.advance(phoenix["capturable_at"] - game_clock())
    later = await _state(red)
    assert next(s for s in later["shards"] if s["shard_id"] == 1)["capturable_at"] is None


async def test_online_count_follows_joins_and_leaves(
    server: MasterServer, make_player: MakePlayer
) -> None:
    watcher = await make_player()
    alone = (await _state(watcher))["online_players"]
    other = await make_player()
    assert (await _state(watcher))["online_players"] == alone + 1
    hub = server.ctx.hub
    presence = hub.presence_of_character(other.id)
    assert presence is not None and presence.conn is not None
    conn = presence.conn
    await other.disconnect()
    await asyncio.wait_for(conn.finished.wait(), 10)
    assert (await _state(watcher))["online_players"] == hub.players_online == alone


async def test_aetherfall_start_and_end_show_at_once(
    server: MasterServer, make_player: MakePlayer, game_clock: FakeClock
) -> None:
    world = server.ctx.services.require(WorldService)
    watcher = await make_player()
    before = await _state(watcher)
    assert before["aetherfall_active"] is False
    game_clock.advance(before["next_aetherfall_at"] - game_clock())
    fired = await world.tick()
    assert fired is not None
    during = await _state(watcher)
    assert during["aetherfall_active"] is True
    assert during["aetherfall"]["epicentre_id"] == fired.epicentre_id
    assert during["next_aetherfall_at"] > before["next_aetherfall_at"]
    assert during["recent_events"][0]["event_type"] == "aetherfall"
    # the Aetherfall ends by the clock, before any tick announces it
    game_clock.advance(fired.ends_at - game_clock())
    after = await _state(watcher)
    assert after["aetherfall_active"] is False and after["aetherfall"] is None


async def test_a_failed_capture_write_shows_the_stored_world(
    server: MasterServer, make_player: MakePlayer, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = server.ctx.services.require(WorldService)
    red = await make_player(faction="Crimson Covenant")
    path = path_between(server.ctx.world, 1, 5)
    assert path is not None
    for loc in path[1:]:
        await red.request("move", to_location_id=loc)
    before = await _state(red)

    async def broken(*_args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(world, "_save_shard", broken)  # fault injection
    assert await red.refused("shard_capture", shard_id=1) == "internal_error"
    assert await _state(red) == before  # the rolled-back capture never shows
