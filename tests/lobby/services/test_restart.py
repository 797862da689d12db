"""What the game services persist survives a restart; the OpenAPI document covers them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from lobby import MasterServer
from lobby.services.world import WorldService
from tests.lobby.services.conftest import game_settings, new_player
from tests.lobby.services.players import GamePlayer
from tests.lobby.support import ApiClient, FakeClock


async def _world(p: GamePlayer) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    _, state = await p.rest("GET", "/api/world/state")
    _, events = await p.rest("GET", "/api/world/events?limit=100")
    state.pop("online_players")
    return state, events["events"]


def _party_view(body: dict[str, Any]) -> dict[str, Any]:
    return {
        **body,
        "members": [
            {k: v for k, v in m.items() if k not in ("online", "location_id")}
            for m in body["members"]
        ],
    }


async def test_world_parties_and_inventories_survive_a_restart(
    tmp_path: Path, web: aiohttp.ClientSession
) -> None:
    clock = FakeClock(1_800_000_000.0)
    settings = game_settings(tmp_path / "data")
    async with MasterServer(settings=settings, clock=clock) as first:
        red = await new_player(first.url, web, character_class="Mage")
        blue = await new_player(first.url, web, faction="Azure Syndicate")
        green = await new_player(first.url, web, faction="Verdant Pact")
        # shards and a reality shift
        for path, shard in (((2, 5), 1), ((10,), 4), ((11,), 5), ((6,), 3)):
            for loc in path:
                await red.request("move", to_location_id=loc)
            await red.request("shard_capture", shard_id=shard)
        # an Aetherfall
        clock.advance(first.ctx.world.rules.aetherfall_interval_seconds)
        assert await first.ctx.services.require(WorldService).tick() is not None
        # a party with a member and a live invite
        party = (await blue.request("party_create", name="Keepers"))["details"]["party_id"]
        await blue.request("party_invite", target_id=green.id)
        await green.request("party_accept", party_id=party)
        await blue.request("party_invite", target_id=red.id)
        # a completed trade
        item = (await blue.rest("GET", "/api/inventory"))[1]["items"][0]["item_id"]
        tid = (await blue.request("trade_request", target_id=green.id))["details"]["trade_id"]
        await green.request("trade_accept", trade_id=tid)
        await blue.request("trade_update", trade_id=tid, items=[{"item_id": item}], gold=7)
        await green.request("trade_update", trade_id=tid, gold=3)
        await blue.request(
            "trade_update", trade_id=tid, items=[{"item_id": item}], gold=7, confirmed=True
        )
        await green.request("trade_update", trade_id=tid, gold=3, confirmed=True)
        assert (await green.next("trade_complete", trade_id=tid))["success"] is True

        for p in (red, green, blue):  # blue, the leader, goes last: leadership stays
            await p.disconnect()
        world_before = await _world(red)
        assert world_before[0]["current_reality"] == "Shattered Veil"
        party_before = _party_view((await green.rest("GET", f"/api/party/{party}"))[1])
        assert len(party_before["members"]) == 2 and len(party_before["invites"]) == 1
        inventories_before = [(await p.rest("GET", "/api/inventory"))[1] for p in (blue, green)]
        characters_before = [(await p.rest("GET", "/api/characters"))[1] for p in (red, green)]

    async with MasterServer(settings=settings, clock=clock) as second:
        for p in (red, blue, green):
            p.client = _rebase(p.client, second.url)
        assert await _world(red) == world_before
        assert _party_view((await green.rest("GET", f"/api/party/{party}"))[1]) == party_before
        assert [(await p.rest("GET", "/api/inventory"))[1] for p in (blue, green)] == (
            inventories_before
        )
        assert [(await p.rest("GET", "/api/characters"))[1] for p in (red, green)] == (
            characters_before
        )
        # the persisted invite still works, and the world keeps counting
        await red.connect()
        state = await red.next("world_state")
        assert state["current_reality"] == "Shattered Veil"
        invite = await red.next("party_invite", party_id=party)
        assert invite["inviter_id"] == blue.id
        await red.request("party_accept", party_id=party)
        _, body = await red.rest("GET", "/api/party")
        assert len(body["members"]) == 3 and body["leader_id"] == blue.id
        assert second.ctx.services.require(WorldService).aetherfall_count == 1
        await red.disconnect()


def _rebase(client: ApiClient, url: str) -> ApiClient:
    fresh = ApiClient(url, client.http)
    fresh.token = client.token  # sessions survive the restart too
    return fresh


async def test_openapi_covers_the_game_endpoints(
    server: MasterServer, web: aiohttp.ClientSession
) -> None:
    status, doc, _ = await ApiClient(server.url, web).call("GET", "/api/openapi.json")
    assert status == 200
    paths = doc["paths"]
    for method, path in (
        ("get", "/api/world/state"),
        ("get", "/api/world/shards"),
        ("get", "/api/world/events"),
        ("get", "/api/party/{party_id}"),
        ("get", "/api/party"),
        ("post", "/api/party/create"),
        ("post", "/api/party/invite"),
        ("post", "/api/party/leave"),
        ("post", "/api/party/accept"),
        ("post", "/api/party/decline"),
        ("post", "/api/party/kick"),
        ("post", "/api/party/disband"),
        ("get", "/api/inventory"),
        ("get", "/api/peers/{character_id}"),
        ("get", "/api/peers"),
    ):
        assert method in paths[path], (method, path)
    schemas = doc["components"]["schemas"]
    for name in (
        "WorldStateOut",
        "ShardsOut",
        "EventsOut",
        "PartyOut",
        "InventoryOut",
        "PeerInfoOut",
    ):
        assert name in schemas, name
    state = paths["/api/world/state"]["get"]["responses"]["200"]
    assert state["content"]["application/json"]["schema"]["$ref"].endswith("/WorldStateOut")
    assert "current_reality" in schemas["WorldStateOut"]["properties"]
    events = paths["/api/world/events"]["get"]
    assert {p["name"] for p in events.get("parameters", [])} >= {"limit", "before"}
    assert doc["paths"]["/api/status"]["get"]
    assert "relayed_messages" in schemas["StatusResponse"]["properties"]
