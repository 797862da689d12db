"""Tests of MOVE validation against the world map."""

from __future__ import annotations

import pytest

from lobby.game.travel import path_between, validate_move
from lobby.game.world import WorldDefinition
from protocol.errors import ErrorCode, GameRuleError


def test_move_to_neighbour(world: WorldDefinition) -> None:
    dest = validate_move(world, current_location_id=1, to_location_id=2)
    assert dest.id == 2 and dest.name == "Whispering Woods"
    assert validate_move(world, current_location_id=2, to_location_id=1, claimed_from_id=2).id == 1


@pytest.mark.parametrize(
    ("current", "to", "kwargs", "fragment"),
    [
        (1, 999, {}, "no location"),
        (1, 12, {}, "not next to"),
        (1, 1, {}, "already at"),
        (1, 2, {"claimed_from_id": 3}, "you are at location 1"),
        (1, 2, {"in_combat": True}, "combat"),
        (999, 2, {}, "no longer exists"),
    ],
)
def test_invalid_moves(
    world: WorldDefinition, current: int, to: int, kwargs: dict[str, object], fragment: str
) -> None:
    with pytest.raises(GameRuleError, match=fragment) as exc:
        validate_move(world, current_location_id=current, to_location_id=to, **kwargs)  # type: ignore[arg-type]
    assert exc.value.code == ErrorCode.INVALID_MOVE


def test_lost_character_may_return_to_start(world: WorldDefinition) -> None:
    dest = validate_move(world, current_location_id=999, to_location_id=world.start_location_id)
    assert dest.id == world.start_location_id


def test_every_edge_is_a_valid_move(world: WorldDefinition) -> None:
    for loc in world.locations:
        for n in loc.neighbours:
            assert validate_move(world, current_location_id=loc.id, to_location_id=n).id == n


def test_path_between(world: WorldDefinition) -> None:
    assert path_between(world, 1, 1) == [1]
    assert path_between(world, 1, 2) == [1, 2]
    path = path_between(world, 1, 12)
    assert path is not None and path[0] == 1 and path[-1] == 12
    for a, b in zip(path, path[1:], strict=False):
        assert world.are_neighbours(a, b)
    assert len(path) == 4  # 1 -> 3 -> 8 -> 12
    assert path_between(world, 1, 999) is None
    assert path_between(world, 999, 1) is None
    for loc in world.locations:
        assert path_between(world, world.start_location_id, loc.id) is not None
