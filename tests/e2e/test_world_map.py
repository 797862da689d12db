"""The world map over REST: ``GET /api/world/map`` and ``NetworkClient.get_world_map``.

A real lobby with the bundled world; the answers are checked against the
lobby's own world definition (every location, its exits, its shards) and the
exits are walked with MOVE, so a client finds valid moves without trying.
"""

from __future__ import annotations

import aiohttp
import pytest

from lobby.game.world import load_world
from protocol.errors import ApiError, ErrorCode
from protocol.rest import LocationOut, WorldMapOut
from tests.e2e.conftest import ClientFactory, Deployment
from tests.polling import eventually

__all__: list[str] = []


async def test_the_map_is_the_lobby_world(
    deployment: Deployment, make_client: ClientFactory
) -> None:
    alice = await make_client("Alice")
    world = load_world()  # the bundled world every test lobby runs
    world_map = await alice.get_world_map()
    assert isinstance(world_map, WorldMapOut)
    assert world_map.name == world.name
    assert world_map.start_location_id == world.start_location_id
    assert [loc.id for loc in world_map.locations] == sorted(loc.id for loc in world.locations)
    for loc in world.locations:
        served = world_map.location(loc.id)
        assert served is not None
        assert (served.name, served.description, served.safe) == (
            loc.name,
            loc.description,
            loc.safe,
        )
        assert set(served.neighbours) == set(loc.neighbours)
        assert served.shard_ids == [s.id for s in world.shards if s.location_id == loc.id]


async def test_player_counts_follow_moves(
    deployment: Deployment, make_client: ClientFactory
) -> None:
    """Counts are exact at once on one process; a cluster's other processes learn of a
    join or a move through its stream, so there the map converges within a bound."""
    alice = await make_client("Alice")
    bob = await make_client("Bob")
    start = alice.character
    assert start is not None

    async def counts(*location_ids: int) -> tuple[int, ...]:
        world_map = await alice.get_world_map()
        found = [world_map.location(i) for i in location_ids]
        return tuple(-1 if loc is None else loc.players for loc in found)

    async def settle(expected: tuple[int, ...], *location_ids: int) -> None:
        if deployment.kind == "cluster":

            async def reached() -> bool:
                return await counts(*location_ids) == expected

            await eventually(reached)
        assert await counts(*location_ids) == expected

    await settle((2,), start.location_id)
    here = (await alice.get_world_map()).location(start.location_id)
    assert here is not None
    target = here.neighbours[0]
    await bob.send_move(target)
    await settle((1, 1), start.location_id, target)


async def test_every_exit_is_a_valid_move_and_nothing_else_is(
    make_client: ClientFactory,
) -> None:
    alice = await make_client("Alice")
    world_map = await alice.get_world_map()
    character = alice.character
    assert character is not None
    here = world_map.location(character.location_id)
    assert here is not None
    far = next(loc.id for loc in world_map.locations if loc.id not in (*here.neighbours, here.id))
    with pytest.raises(ApiError) as refused:
        await alice.send_move(far)
    assert refused.value.code == ErrorCode.INVALID_MOVE
    for exit_id in here.neighbours:  # there and back along every exit
        await alice.send_move(exit_id)
        await alice.send_move(here.id)
    assert alice.character is not None and alice.character.location_id == here.id


async def test_map_needs_a_login_and_is_in_the_openapi_document(deployment: Deployment) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{deployment.url_for(0)}/api/world/map") as resp:
            assert resp.status == 401
            assert (await resp.json())["code"] == "unauthorized"
        async with http.get(f"{deployment.url_for(0)}/api/openapi.json") as resp:
            doc = await resp.json()
    op = doc["paths"]["/api/world/map"]["get"]
    ref = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/WorldMapOut")
    schemas = doc["components"]["schemas"]
    assert set(schemas["WorldMapOut"]["properties"]) == set(WorldMapOut.model_fields)
    assert set(schemas["LocationOut"]["properties"]) == set(LocationOut.model_fields)
    assert {"id", "name", "neighbours", "players"} <= set(LocationOut.model_fields)
