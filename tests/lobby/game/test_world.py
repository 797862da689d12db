"""Tests of the world definition loader and its checks."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from lobby.game.world import WorldDefinition, load_world, parse_world
from protocol.errors import ConfigError, LobbyError


@pytest.fixture
def raw() -> dict[str, Any]:
    data = json.loads((Path(__file__).parents[3] / "lobby" / "data" / "world.json").read_text())
    assert isinstance(data, dict)
    return data


def _write(tmp_path: Path, data: Any) -> Path:
    p = tmp_path / "world.json"
    p.write_text(json.dumps(data))
    return p


def test_shipped_world_loads() -> None:
    w = load_world()
    assert isinstance(w, WorldDefinition)
    assert len(w.factions) == 3
    assert "Crimson Covenant" in w.faction_names()
    assert len(w.classes) >= 6
    assert 10 <= len(w.locations) <= 14
    assert 5 <= len(w.shards) <= 7
    assert any(s.name == "Phoenix Flame" for s in w.shards)
    assert 3 <= len(w.realities) <= 4
    assert w.initial_reality == w.realities[0]
    assert w.location(w.start_location_id) is not None
    for cls in w.classes:
        assert cls.abilities
        for name in cls.abilities:
            assert w.ability(name) is not None


def test_load_from_path_equals_shipped(tmp_path: Path, raw: dict[str, Any]) -> None:
    assert load_world(_write(tmp_path, raw)) == load_world()
    assert load_world(str(_write(tmp_path, raw))) == load_world()


def test_lookups_never_raise_keyerror() -> None:
    w = load_world()
    assert w.location(10_000) is None
    assert w.shard(10_000) is None
    assert w.item(10_000) is None
    assert w.ability("Nope") is None
    assert w.class_def("Nope") is None
    loc = w.location(1)
    assert loc is not None and loc.name == "Haven's Rest"
    cd = w.class_def("Mage")
    assert cd is not None and "Fireball" in cd.abilities


def test_neighbours_symmetric_and_not_self() -> None:
    w = load_world()
    for loc in w.locations:
        assert not w.are_neighbours(loc.id, loc.id)
        for n in loc.neighbours:
            assert w.are_neighbours(loc.id, n)
            assert w.are_neighbours(n, loc.id)
    assert not w.are_neighbours(1, 12)
    assert not w.are_neighbours(1, 999)


def test_shards_at() -> None:
    w = load_world()
    phoenix = next(s for s in w.shards if s.name == "Phoenix Flame")
    assert phoenix in w.shards_at(phoenix.location_id)
    assert w.shards_at(1) == ()


def _expect(tmp_path: Path, data: Any, *fragments: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_world(_write(tmp_path, data))
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    assert isinstance(info.value, LobbyError)
    return info.value


def test_unknown_neighbour(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["locations"][0]["neighbours"].append(99)
    _expect(tmp_path, raw, "unknown neighbour id 99", str(tmp_path))


def test_asymmetric_edge_rejected(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["locations"][0]["neighbours"].append(12)
    _expect(tmp_path, raw, "asymmetric edge", "1", "12")


def test_self_neighbour(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["locations"][0]["neighbours"].append(1)
    _expect(tmp_path, raw, "itself")


def test_duplicate_neighbour(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["locations"][0]["neighbours"].append(2)
    _expect(tmp_path, raw, "duplicate neighbour")


@pytest.mark.parametrize(
    ("section", "key", "fragment"),
    [
        ("locations", "id", "duplicate location id"),
        ("shards", "id", "duplicate shard id"),
        ("items", "id", "duplicate item id"),
        ("factions", "name", "duplicate faction name"),
        ("classes", "name", "duplicate class name"),
        ("abilities", "name", "duplicate ability name"),
    ],
)
def test_duplicates(
    tmp_path: Path, raw: dict[str, Any], section: str, key: str, fragment: str
) -> None:
    dup = copy.deepcopy(raw[section][0])
    if section == "locations":
        dup["neighbours"] = []
    if section == "shards":
        dup["name"] = "Another"
    raw[section].append(dup)
    _expect(tmp_path, raw, fragment)


def test_duplicate_reality(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["realities"].append(raw["realities"][0])
    _expect(tmp_path, raw, "duplicate reality")


def test_shard_at_missing_location(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["shards"][0]["location_id"] = 77
    _expect(tmp_path, raw, "missing location 77", "Phoenix Flame")


def test_start_location_missing(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["start_location_id"] = 500
    _expect(tmp_path, raw, "start_location_id 500")


def test_unreachable_location(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["locations"].append({"id": 50, "name": "Island", "neighbours": []})
    _expect(tmp_path, raw, "unreachable", "50")


def test_class_unknown_ability(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["classes"][0]["abilities"].append("Meteor")
    _expect(tmp_path, raw, "unknown ability 'Meteor'")


def test_starting_inventory_unknown_item(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["rules"]["starting_inventory"] = [404]
    _expect(tmp_path, raw, "unknown item id 404")


def test_threshold_above_shard_count(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["rules"]["reality_shift_threshold"] = 40
    _expect(tmp_path, raw, "reality_shift_threshold")


def test_schema_errors(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["locations"][0]["id"] = "one"
    _expect(tmp_path, raw, "locations.0.id")


def test_extra_field_rejected(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["shards"][0]["colour"] = "red"
    _expect(tmp_path, raw, "colour")


def test_empty_sections(tmp_path: Path, raw: dict[str, Any]) -> None:
    raw["factions"] = []
    _expect(tmp_path, raw, "factions")


def test_not_json(tmp_path: Path) -> None:
    p = tmp_path / "world.json"
    p.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_world(p)


def test_not_an_object(tmp_path: Path) -> None:
    _expect(tmp_path, [1, 2], "JSON object")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read world file"):
        load_world(tmp_path / "nope.json")


def test_parse_world_direct(raw: dict[str, Any]) -> None:
    assert parse_world(raw) == load_world()
    raw["locations"][1]["neighbours"] = []
    with pytest.raises(ConfigError, match="<world>"):
        parse_world(raw)


def test_world_is_frozen() -> None:
    w = load_world()
    with pytest.raises(ValueError):
        w.start_location_id = 2  # type: ignore[misc]
