"""protocol.rest: the REST bodies both sides read, typed, lenient to new keys, readable by key."""

from __future__ import annotations

import pytest

from protocol.errors import DecodeError, ErrorCode
from protocol.rest import (
    CharacterListResponse,
    ErrorBody,
    LocationOut,
    StatusResponse,
    WorldMapOut,
    parse_body,
)

__all__: list[str] = []

CHARACTER = {
    "id": 7,
    "name": "Aria",
    "faction": "Crimson Covenant",
    "character_class": "Mage",
    "level": 1,
    "experience": 0,
    "health": 100,
    "max_health": 100,
    "mana": 50,
    "max_mana": 50,
    "location_id": 1,
    "gold": 100,
    "created_at": 1.5,
}


def test_bodies_read_by_attribute_and_by_json_key() -> None:
    listed = parse_body(
        CharacterListResponse, {"characters": [CHARACTER], "limit": 5}, what="GET /x"
    )
    aria = listed.characters[0]
    assert aria.id == aria["id"] == 7 and aria.get("name") == "Aria"
    assert "faction" in aria and "password" not in aria and 3 not in aria
    assert aria.get("nope", "default") == "default"
    with pytest.raises(KeyError):
        aria["nope"]
    assert aria.model_dump() == CHARACTER  # the wire format is the JSON keys


def test_unknown_keys_from_a_newer_lobby_are_ignored() -> None:
    newer = {**CHARACTER, "title": "the Bold"}
    listed = parse_body(CharacterListResponse, {"characters": [newer], "limit": 5}, what="x")
    assert "title" not in listed.characters[0].model_dump()


def test_a_body_that_does_not_match_names_the_field() -> None:
    with pytest.raises(DecodeError) as bad:
        parse_body(CharacterListResponse, {"characters": [{"id": "x"}], "limit": 5}, what="GET /c")
    assert "GET /c" in str(bad.value) and "CharacterListResponse" in str(bad.value)
    assert "characters.0" in str(bad.value)
    with pytest.raises(DecodeError):
        parse_body(StatusResponse, ["not", "an", "object"], what="GET /api/status")


def test_error_body_and_world_map() -> None:
    err = ErrorBody.model_validate({"code": "invalid_move", "message": "not adjacent"})
    assert err.code == ErrorCode.INVALID_MOVE and err.details == {}
    world_map = WorldMapOut(
        name="w",
        start_location_id=1,
        locations=[
            LocationOut(id=1, name="A", neighbours=[2]),
            LocationOut(id=2, name="B", neighbours=[1], players=3),
        ],
    )
    found = world_map.location(2)
    assert found is not None and found.players == 3 and found["neighbours"] == [1]
    assert world_map.location(9) is None
