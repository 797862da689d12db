"""Tests of shard capture, the reality rule and the Aetherfall schedule and effect."""

from __future__ import annotations

import pytest

from lobby.game.shards import (
    ShardBoard,
    ShardState,
    aetherfall_due,
    aetherfall_event,
    next_aetherfall,
    next_reality,
)
from lobby.game.world import WorldDefinition
from protocol.errors import ErrorCode, GameRuleError, LobbyError

CRIMSON = "Crimson Covenant"
AZURE = "Azure Syndicate"


def _loc(world: WorldDefinition, shard_id: int) -> int:
    shard = world.shard(shard_id)
    assert shard is not None
    return shard.location_id


def _refused(code: ErrorCode, exc: pytest.ExceptionInfo[GameRuleError]) -> None:
    assert exc.value.code == code
    assert isinstance(exc.value, LobbyError)


def test_new_board(world: WorldDefinition) -> None:
    board = ShardBoard(world)
    assert board.reality == world.realities[0]
    assert all(s.owner is None for s in board.states())
    assert board.counts() == {f.name: 0 for f in world.factions}
    snap = board.snapshot(now=0.0)
    assert [s["shard_id"] for s in snap] == [s.id for s in world.shards]
    assert snap[0]["name"] == "Phoenix Flame" and snap[0]["owner"] is None


def test_capture_succeeds_at_location(world: WorldDefinition) -> None:
    board = ShardBoard(world)
    out = board.capture(
        1,
        character_id=7,
        faction=CRIMSON,
        location_id=_loc(world, 1),
        now=100.0,
        character_name="Ash",
    )
    assert out.shard.name == "Phoenix Flame"
    assert out.previous_owner is None
    assert out.state == ShardState(1, CRIMSON, 100.0, 7, "Ash")
    assert out.reality_shift is None
    assert board.state(1).owner == CRIMSON
    assert board.counts()[CRIMSON] == 1


def test_capture_from_wrong_location_refused(world: WorldDefinition) -> None:
    board = ShardBoard(world)
    with pytest.raises(GameRuleError) as exc:
        board.capture(1, character_id=7, faction=CRIMSON, location_id=1, now=0.0)
    _refused(ErrorCode.NOT_AT_LOCATION, exc)
    assert exc.value.details["shard_location_id"] == _loc(world, 1)
    assert board.state(1).owner is None


def test_capture_already_owned_refused(world: WorldDefinition) -> None:
    board = ShardBoard(world)
    loc = _loc(world, 2)
    board.capture(2, character_id=7, faction=CRIMSON, location_id=loc, now=0.0)
    with pytest.raises(GameRuleError) as exc:
        board.capture(2, character_id=8, faction=CRIMSON, location_id=loc, now=10_000.0)
    _refused(ErrorCode.ALREADY_OWNED, exc)


def test_capture_cooldown(world: WorldDefinition) -> None:
    board = ShardBoard(world)
    loc = _loc(world, 3)
    cooldown = world.rules.capture_cooldown_seconds
    board.capture(3, character_id=7, faction=CRIMSON, location_id=loc, now=1000.0)
    with pytest.raises(GameRuleError) as exc:
        board.capture(3, character_id=9, faction=AZURE, location_id=loc, now=1000.0 + cooldown - 1)
    _refused(ErrorCode.SHARD_COOLDOWN, exc)
    assert exc.value.details["retry_at"] == 1000.0 + cooldown
    assert board.state(3).owner == CRIMSON
    snap = {s["shard_id"]: s for s in board.snapshot(now=1000.0)}
    assert snap[3]["capturable_at"] == 1000.0 + cooldown
    out = board.capture(3, character_id=9, faction=AZURE, location_id=loc, now=1000.0 + cooldown)
    assert out.previous_owner == CRIMSON
    assert board.counts() == {CRIMSON: 0, AZURE: 1, "Verdant Pact": 0}
    snap = {s["shard_id"]: s for s in board.snapshot(now=1000.0 + 2 * cooldown)}
    assert snap[3]["capturable_at"] is None


def test_unknown_shard_and_faction(world: WorldDefinition) -> None:
    board = ShardBoard(world)
    with pytest.raises(GameRuleError) as exc:
        board.capture(99, character_id=1, faction=CRIMSON, location_id=1, now=0.0)
    _refused(ErrorCode.NOT_FOUND, exc)
    with pytest.raises(GameRuleError) as exc:
        board.state(99)
    _refused(ErrorCode.NOT_FOUND, exc)
    with pytest.raises(GameRuleError) as exc:
        board.capture(1, character_id=1, faction="Pirates", location_id=_loc(world, 1), now=0.0)
    _refused(ErrorCode.VALIDATION_ERROR, exc)


def test_board_restored_from_rows(world: WorldDefinition) -> None:
    rows = [ShardState(1, AZURE, 5.0, 3), ShardState(999, CRIMSON, 1.0, 2)]
    board = ShardBoard(world, reality=world.realities[2], states=rows)
    assert board.reality == world.realities[2]
    assert board.state(1).owner == AZURE
    assert len(board.states()) == len(world.shards)
    assert ShardBoard(world, reality="Gone").reality == world.realities[0]


def test_reality_shifts_on_crossing_threshold(world: WorldDefinition) -> None:
    threshold = world.rules.reality_shift_threshold
    board = ShardBoard(world)
    t = 0.0
    shifts = []
    for shard in world.shards[:threshold]:
        out = board.capture(
            shard.id, character_id=1, faction=CRIMSON, location_id=shard.location_id, now=t
        )
        shifts.append(out.reality_shift)
        t += 1
    assert shifts[:-1] == [None] * (threshold - 1)
    last = shifts[-1]
    assert last is not None
    assert (last.from_reality, last.to_reality) == (world.realities[0], world.realities[1])
    assert last.faction == CRIMSON and last.shards_held == threshold
    assert board.reality == world.realities[1]
    # holding more does not shift again
    extra = world.shards[threshold]
    out = board.capture(
        extra.id, character_id=1, faction=CRIMSON, location_id=extra.location_id, now=t
    )
    assert out.reality_shift is None
    assert board.reality == world.realities[1]


def test_reality_shift_again_after_losing_and_retaking(world: WorldDefinition) -> None:
    threshold = world.rules.reality_shift_threshold
    cd = world.rules.capture_cooldown_seconds
    held = [ShardState(s.id, CRIMSON, 0.0, 1) for s in world.shards[:threshold]]
    board = ShardBoard(world, reality=world.realities[-1], states=held)
    first = world.shards[0]
    board.capture(first.id, character_id=2, faction=AZURE, location_id=first.location_id, now=cd)
    out = board.capture(
        first.id, character_id=1, faction=CRIMSON, location_id=first.location_id, now=2 * cd
    )
    assert out.reality_shift is not None
    assert out.reality_shift.to_reality == world.realities[0]  # wraps round


def test_next_reality(world: WorldDefinition) -> None:
    assert next_reality(world, world.realities[0]) == world.realities[1]
    assert next_reality(world, world.realities[-1]) == world.realities[0]
    assert next_reality(world, "nowhere") == world.realities[0]


def test_next_aetherfall_schedule() -> None:
    assert next_aetherfall(None, 100.0, 60.0) == 160.0
    assert next_aetherfall(100.0, 120.0, 60.0) == 160.0
    assert next_aetherfall(100.0, 1_000.0, 60.0) == 160.0  # overdue: due now, not replayed
    assert next_aetherfall(500.0, 100.0, 60.0) == 160.0  # clock went back
    with pytest.raises(ValueError):
        next_aetherfall(0.0, 1.0, 0.0)


def test_aetherfall_due() -> None:
    assert not aetherfall_due(None, 1e9, 60.0)
    assert not aetherfall_due(100.0, 159.9, 60.0)
    assert aetherfall_due(100.0, 160.0, 60.0)
    assert aetherfall_due(100.0, 10_000.0, 60.0)
    # after firing at 10_000 the next one is an interval later: no burst of missed ones
    assert not aetherfall_due(10_000.0, 10_001.0, 60.0)


def test_aetherfall_event_deterministic(world: WorldDefinition) -> None:
    a = aetherfall_event(world, seed=42, now=5.0)
    b = aetherfall_event(world, seed=42, now=5.0)
    assert a == b
    epicentres = {aetherfall_event(world, seed=s, now=0.0).epicentre_id for s in range(200)}
    assert len(epicentres) > 3
    for s in range(50):
        ev = aetherfall_event(world, seed=s, now=0.0)
        epi = world.location(ev.epicentre_id)
        assert epi is not None and not epi.safe
        assert ev.struck_location_ids[0] == ev.epicentre_id
        for loc_id in ev.struck_location_ids:
            loc = world.location(loc_id)
            assert loc is not None and not loc.safe
        assert ev.released_shard_ids == tuple(s.id for s in world.shards_at(ev.epicentre_id))
        assert ev.damage == world.rules.aetherfall_power
        assert ev.damage_at(ev.epicentre_id) == ev.damage
        assert ev.damage_at(world.start_location_id) == 0
    assert a.to_dict()["epicentre_id"] == a.epicentre_id


def test_aetherfall_releases_shards(world: WorldDefinition) -> None:
    seed = next(
        s for s in range(1000) if aetherfall_event(world, seed=s, now=0.0).released_shard_ids
    )
    ev = aetherfall_event(world, seed=seed, now=50.0)
    held = [ShardState(s.id, AZURE, 49.0, 4) for s in world.shards]
    board = ShardBoard(world, states=held)
    released = board.apply_aetherfall(ev)
    assert [r.shard_id for r in released] == list(ev.released_shard_ids)
    for shard_id in ev.released_shard_ids:
        assert board.state(shard_id) == ShardState(shard_id)
        # cooldown cleared: capturable right away
        board.capture(
            shard_id, character_id=1, faction=CRIMSON, location_id=_loc(world, shard_id), now=50.0
        )


def test_world_state(world: WorldDefinition) -> None:
    board = ShardBoard(world)
    board.capture(1, character_id=1, faction=CRIMSON, location_id=_loc(world, 1), now=0.0)
    state = board.world_state(now=0.0)
    assert state["current_reality"] == world.realities[0]
    assert state["realities"] == list(world.realities)
    assert state["faction_shards"][CRIMSON] == 1
    assert state["shards"] == board.snapshot(0.0)
