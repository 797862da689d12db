"""Tests of the world event log's entries and the Chronicle's announcements."""

from __future__ import annotations

import json

from lobby.game.chronicle import (
    ANNOUNCER,
    aetherfall_announcement,
    aetherfall_end_entry,
    aetherfall_entry,
    capture_entries,
    reality_shift_announcement,
)
from lobby.game.shards import CaptureOutcome, ShardBoard, aetherfall_event
from lobby.game.world import WorldDefinition

CRIMSON = "Crimson Covenant"


def _capture(board: ShardBoard, shard_id: int, now: float) -> CaptureOutcome:
    shard = board.world.shard(shard_id)
    assert shard is not None
    return board.capture(
        shard_id, character_id=7, faction=CRIMSON, location_id=shard.location_id, now=now
    )


def test_a_capture_is_one_entry(world: WorldDefinition) -> None:
    board = ShardBoard(world)
    shard = world.shards[0]
    entries = capture_entries(
        _capture(board, shard.id, 0.0), character_id=7, character_name="Ash", faction=CRIMSON
    )
    assert [e.kind for e in entries] == ["shard_captured"]
    assert entries[0].description == f"Ash captured {shard.name} for the {CRIMSON}"
    assert entries[0].data == {
        "shard_id": shard.id,
        "faction": CRIMSON,
        "previous_faction": None,
        "character_id": 7,
        "location_id": shard.location_id,
    }


def test_the_capture_that_shifts_reality_adds_the_shift(world: WorldDefinition) -> None:
    board = ShardBoard(world)
    threshold = world.rules.reality_shift_threshold
    for shard in world.shards[: threshold - 1]:
        _capture(board, shard.id, 0.0)
    outcome = _capture(board, world.shards[threshold - 1].id, 0.0)
    shift = outcome.reality_shift
    assert shift is not None
    entries = capture_entries(outcome, character_id=7, character_name="Ash", faction=CRIMSON)
    assert [e.kind for e in entries] == ["shard_captured", "reality_shift"]
    assert entries[1].description == (
        f"Reality shifts from {world.realities[0]} to {world.realities[1]}: "
        f"the {CRIMSON} hold {threshold} shards"
    )
    assert entries[1].data == {
        "from": world.realities[0],
        "to": world.realities[1],
        "faction": CRIMSON,
        "shards_held": threshold,
    }
    announcement = reality_shift_announcement(shift)
    assert announcement.sender_name == ANNOUNCER and announcement.priority == "warning"
    assert announcement.content == f"Reality shifts: the world is now {world.realities[1]}."


def test_aetherfall_entries(world: WorldDefinition) -> None:
    event = aetherfall_event(world, seed=3, now=100.0)
    entry = aetherfall_entry(event, number=3)
    assert entry.kind == "aetherfall"
    assert entry.description == (
        f"Aetherfall #3 strikes {event.epicentre_name} "
        f"({event.damage} damage in locations {list(event.struck_location_ids)})"
    )
    assert entry.data == event.to_dict()
    end = aetherfall_end_entry(event)
    assert end.kind == "aetherfall_end"
    assert end.description == f"The Aetherfall over {event.epicentre_name} has passed"
    assert end.data == {"seed": 3, "ends_at": event.ends_at}
    for e in (entry, end):  # stored as JSON
        assert json.loads(json.dumps(e.data)) == e.data
    announcement = aetherfall_announcement(event)
    assert announcement.priority == "critical" and event.epicentre_name in announcement.content
