"""World: shard capture rules, reality shift, Aetherfall on the injectable clock, event log."""

from __future__ import annotations

from lobby import MasterServer
from lobby.game.shards import aetherfall_event
from lobby.game.travel import path_between
from lobby.services.world import WorldService
from tests.lobby.services.conftest import MakePlayer
from tests.lobby.services.players import GamePlayer
from tests.lobby.support import FakeClock


async def walk(player: GamePlayer, *path: int) -> None:
    for loc in path:
        await player.request("move", to_location_id=loc)


async def test_capture_rules_broadcast_and_log(
    server: MasterServer, make_player: MakePlayer, game_clock: FakeClock
) -> None:
    red = await make_player(faction="Crimson Covenant")
    blue = await make_player(faction="Azure Syndicate")
    watcher = await make_player(faction="Verdant Pact")
    state = await watcher.next("world_state")
    assert state["current_reality"] == "Prime Reality" and len(state["shards"]) == 6

    # wrong place, unknown shard, someone else's name
    assert await red.refused("shard_capture", shard_id=1) == "not_at_location"
    assert await red.refused("shard_capture", shard_id=77) == "not_found"
    await walk(red, 2, 5)
    assert await red.refused("shard_capture", shard_id=1, character_id=blue.id) == "forbidden"

    got = await red.request("shard_capture", shard_id=1)
    assert got["details"] == {
        "shard_id": 1,
        "faction": "Crimson Covenant",
        "current_reality": "Prime Reality",
    }
    captured = await watcher.next("shard_captured", shard_id=1)
    assert captured["faction"] == "Crimson Covenant" and captured["character_id"] == red.id
    assert captured["shard_name"] == "Phoenix Flame" and captured["character_name"] == red.name
    status = await watcher.next("shard_status")
    assert status["shards"] == [
        {
            "shard_id": 1,
            "shard_name": "Phoenix Flame",
            "owner_faction": "Crimson Covenant",
            "location_id": 5,
            "captured_by": red.name,
            "captured_at": game_clock(),
        }
    ]
    assert await red.refused("shard_capture", shard_id=1) == "already_owned"

    # the cooldown protects the new owner, then the shard can change hands
    await walk(blue, 2, 5)
    assert await blue.refused("shard_capture", shard_id=1) == "shard_cooldown"
    game_clock.advance(300)
    await blue.request("shard_capture", shard_id=1)
    again = await watcher.next("shard_captured", shard_id=1)
    assert again["faction"] == "Azure Syndicate"
    assert again["previous_faction"] == "Crimson Covenant"

    _, shards = await watcher.rest("GET", "/api/world/shards")
    phoenix = next(s for s in shards["shards"] if s["shard_id"] == 1)
    assert phoenix["owner"] == "Azure Syndicate" and phoenix["captured_by"] == blue.id
    assert shards["faction_shards"]["Azure Syndicate"] == 1

    status_code, page = await watcher.rest("GET", "/api/world/events?limit=1")
    assert status_code == 200 and len(page["events"]) == 1
    assert page["events"][0]["event_type"] == "shard_captured"
    assert page["events"][0]["data"]["faction"] == "Azure Syndicate"
    _, page2 = await watcher.rest("GET", f"/api/world/events?limit=5&before={page['next_before']}")
    assert [e["data"]["faction"] for e in page2["events"]] == ["Crimson Covenant"]
    assert page2["next_before"] is None
    assert (await watcher.rest("GET", "/api/world/events?limit=0"))[0] == 422


async def test_holding_the_threshold_shifts_reality(
    server: MasterServer, make_player: MakePlayer, game_clock: FakeClock
) -> None:
    red = await make_player(faction="Crimson Covenant", character_class="Mage")
    watcher = await make_player(faction="Verdant Pact")
    for path, shard in (((2, 5), 1), ((10,), 4), ((11,), 5)):
        await walk(red, *path)
        await red.request("shard_capture", shard_id=shard)
    _, state = await watcher.rest("GET", "/api/world/state")
    assert state["current_reality"] == "Prime Reality"
    await walk(red, 6)
    got = await red.request("shard_capture", shard_id=3)
    assert got["details"]["current_reality"] == "Shattered Veil"
    shift = await watcher.next("reality_shift")
    assert shift["new_reality"] == "Shattered Veil"
    assert shift["previous_reality"] == "Prime Reality"
    announcement = await watcher.next("world_announcement")
    assert "Shattered Veil" in announcement["content"]
    _, state = await watcher.rest("GET", "/api/world/state")
    assert state["current_reality"] == "Shattered Veil"
    assert state["faction_shards"]["Crimson Covenant"] == 4
    assert state["recent_events"][0]["event_type"] == "reality_shift"


async def test_aetherfall_follows_the_clock(
    server: MasterServer, make_player: MakePlayer, game_clock: FakeClock
) -> None:
    world = server.ctx.services.require(WorldService)
    rules = server.ctx.world.rules
    expected = aetherfall_event(
        server.ctx.world, seed=1, now=game_clock() + rules.aetherfall_interval_seconds
    )
    # someone holds a shard at the epicentre and stands in the struck area
    epicentre = expected.epicentre_id
    holder = await make_player(faction="Verdant Pact", character_class="Warrior")
    watcher = await make_player()
    path = path_between(server.ctx.world, 1, epicentre)
    assert path is not None
    await walk(holder, *path[1:])
    for shard in server.ctx.world.shards_at(epicentre):
        await holder.request("shard_capture", shard_id=shard.id)

    assert await world.tick() is None  # not due yet
    game_clock.advance(rules.aetherfall_interval_seconds - 1)
    assert await world.tick() is None
    game_clock.advance(1)
    fired = await world.tick()
    assert fired == expected
    msg = await watcher.next("aetherfall")
    assert msg["active"] is True and msg["location_id"] == epicentre
    assert msg["ends_at"] == expected.ends_at
    _, state = await watcher.rest("GET", "/api/world/state")
    assert state["aetherfall_active"] is True
    assert state["aetherfall"]["epicentre_id"] == epicentre
    for shard_id in expected.released_shard_ids:
        assert next(s for s in state["shards"] if s["shard_id"] == shard_id)["owner"] is None
    _, chars = await holder.rest("GET", "/api/characters")
    hero = chars["characters"][0]
    assert hero["health"] == hero["max_health"] - expected.damage
    pushed = await holder.next("character_update", character_id=holder.id)
    assert pushed["health"] == hero["health"]

    # it ends after its duration; the next one is counted from when it fired
    game_clock.advance(rules.aetherfall_duration_seconds)
    assert await world.tick() is None
    ended = await watcher.next("aetherfall", active=False)
    assert ended["location_id"] == epicentre
    _, page = await watcher.rest("GET", "/api/world/events?limit=2")
    assert [e["event_type"] for e in page["events"]] == ["aetherfall_end", "aetherfall"]
    # the recent events the state shows are the log's own entries, data included
    _, state = await watcher.rest("GET", "/api/world/state")
    assert state["recent_events"][:2] == page["events"]
    assert world.next_aetherfall_at == expected.at + rules.aetherfall_interval_seconds
