"""MOVE: validated against the map, persisted, announced to both areas."""

from __future__ import annotations

from lobby import MasterServer
from tests.lobby.services.conftest import MakePlayer


async def test_move_is_validated_persisted_and_announced(
    server: MasterServer, make_player: MakePlayer
) -> None:
    mover = await make_player()
    stayer = await make_player()
    there = await make_player()
    await there.request("move", to_location_id=2)
    await stayer.next("player_left_area", character_id=there.id)

    answer = await mover.request("move", to_location_id=2, from_location_id=1)
    assert answer["details"] == {"location_id": 2, "previous_location_id": 1}
    update = await mover.next("location_update", character_id=mover.id)
    assert update["location_id"] == 2 and update["previous_location_id"] == 1
    left = await stayer.next("player_left_area", character_id=mover.id)
    assert left["location_id"] == 1 and left["to_location_id"] == 2
    joined = await there.next("player_joined_area", character_id=mover.id)
    assert joined["location_id"] == 2 and joined["character_name"] == mover.name

    # persisted: the character list and a fresh WS both know the new place
    _, body = await mover.rest("GET", "/api/characters")
    assert body["characters"][0]["location_id"] == 2
    assert server.hub.presence_of_character(mover.id).character.location_id == 2  # type: ignore[union-attr]

    # refusals: not a neighbour, no such place, stale from, same place, someone else
    assert await mover.refused("move", to_location_id=12) == "invalid_move"
    assert await mover.refused("move", to_location_id=999) == "invalid_move"
    assert await mover.refused("move", to_location_id=5, from_location_id=1) == "invalid_move"
    assert await mover.refused("move", to_location_id=2) == "invalid_move"
    assert await mover.refused("move", to_location_id=5, character_id=stayer.id) == "forbidden"
    _, body = await mover.rest("GET", "/api/characters")
    assert body["characters"][0]["location_id"] == 2
    # still serving after the refusals
    await mover.request("move", to_location_id=5)
