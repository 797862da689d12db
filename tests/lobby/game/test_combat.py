"""Tests of server-authoritative combat: checks, outcomes, determinism, endings."""

from __future__ import annotations

import json

import pytest

from lobby.game.combat import (
    ActionResult,
    Combat,
    Combatant,
    CombatBook,
    make_combatant,
    stats_for,
)
from lobby.game.world import WorldDefinition
from protocol.errors import ErrorCode, GameRuleError
from tests.lobby.game.refusals import refused

WARRIOR, MAGE, CLERIC, ROGUE = 1, 2, 3, 4
POTION, BIGPOT, MANA, BOMB, SWORD = 1, 2, 3, 4, 5  # item template ids in world.json


def _c(world: WorldDefinition, cid: int, cls: str, side: str, **kw: object) -> Combatant:
    return make_combatant(
        world,
        character_id=cid,
        name=f"{cls}{cid}",
        class_name=cls,
        level=1,
        side=side,
        **kw,  # type: ignore[arg-type]
    )


def _duel(world: WorldDefinition, seed: int = 1, **kw: object) -> Combat:
    return Combat.start(
        world,
        combat_id="c1",
        seed=seed,
        participants=[_c(world, WARRIOR, "Warrior", "a", **kw), _c(world, MAGE, "Mage", "b", **kw)],
        now=0.0,
    )


def _code(exc: pytest.ExceptionInfo[GameRuleError]) -> ErrorCode:
    return exc.value.code


def _fighter(combat: Combat, cid: int) -> Combatant:
    f = combat.participant(cid)
    assert f is not None
    return f


# -- building combatants --------------------------------------------------------------------


def test_stats_from_class_and_level(world: WorldDefinition) -> None:
    warrior = world.class_def("Warrior")
    assert warrior is not None
    assert stats_for(warrior, 1) == (
        warrior.base_health,
        warrior.base_mana,
        warrior.base_attack,
        warrior.base_defense,
    )
    assert stats_for(warrior, 3)[0] == warrior.base_health + 2 * warrior.health_per_level
    c = make_combatant(
        world, character_id=1, name="W", class_name="Warrior", level=3, side="a", health=5000
    )
    assert c.max_health == stats_for(warrior, 3)[0] and c.health == c.max_health
    assert c.mana == c.max_mana and c.abilities == warrior.abilities
    hurt = make_combatant(
        world, character_id=1, name="W", class_name="Warrior", level=1, side="a", health=7, mana=-3
    )
    assert hurt.health == 7 and hurt.mana == 0


def test_make_combatant_refusals(world: WorldDefinition) -> None:
    with refused(ErrorCode.VALIDATION_ERROR):
        make_combatant(world, character_id=1, name="x", class_name="Bard", level=1, side="a")
    with refused(ErrorCode.VALIDATION_ERROR):
        make_combatant(world, character_id=1, name="x", class_name="Mage", level=0, side="a")


# -- starting -------------------------------------------------------------------------------


def test_start_refusals(world: WorldDefinition) -> None:
    w, m = _c(world, 1, "Warrior", "a"), _c(world, 2, "Mage", "b")
    with refused(ErrorCode.BAD_REQUEST):
        Combat.start(world, combat_id="x", seed=1, participants=[w, w], now=0.0)
    with pytest.raises(GameRuleError) as exc:
        Combat.start(
            world, combat_id="x", seed=1, participants=[w, _c(world, 3, "Mage", "a")], now=0.0
        )
    assert _code(exc) == ErrorCode.INVALID_TARGET
    dead = _c(world, 3, "Mage", "b", health=0)
    with refused(ErrorCode.INVALID_TARGET):
        Combat.start(world, combat_id="x", seed=1, participants=[w, dead], now=0.0)
    safe = next(loc.id for loc in world.locations if loc.safe)
    with refused(ErrorCode.FORBIDDEN):
        Combat.start(world, combat_id="x", seed=1, participants=[w, m], now=0.0, location_id=safe)
    with refused(ErrorCode.NOT_FOUND):
        Combat.start(world, combat_id="x", seed=1, participants=[w, m], now=0.0, location_id=999)
    unsafe = next(loc.id for loc in world.locations if not loc.safe)
    combat = Combat.start(
        world, combat_id="x", seed=1, participants=[w, m], now=0.0, location_id=unsafe
    )
    assert combat.snapshot()["location_id"] == unsafe


def test_snapshot(world: WorldDefinition) -> None:
    snap = _duel(world).snapshot()
    assert snap["combat_id"] == "c1" and snap["turn"] == 0 and not snap["ended"]
    assert snap["end"] is None
    assert [p["character_id"] for p in snap["participants"]] == [WARRIOR, MAGE]
    p = snap["participants"][0]
    assert p["health"] == p["max_health"] and p["alive"] and not p["fled"]


# -- attack and determinism -----------------------------------------------------------------


def test_attack_deals_damage(world: WorldDefinition) -> None:
    combat = _duel(world)
    mage = _fighter(combat, MAGE)
    before = mage.health
    result = combat.act(WARRIOR, "attack", now=0.0, target_id=MAGE)
    (event,) = result.events
    assert event.kind == "damage" and event.actor_id == WARRIOR and event.target_id == MAGE
    assert event.amount >= 1
    assert mage.health == before - event.amount == event.target_health
    assert result.state["turn"] == 1 and not result.ended and result.consumed_item_id is None


def test_attack_without_target_picks_only_opponent(world: WorldDefinition) -> None:
    result = _duel(world).act(WARRIOR, "attack", now=0.0)
    assert result.events[0].target_id == MAGE


def _script(world: WorldDefinition, seed: int) -> list[ActionResult]:
    combat = _duel(world, seed=seed)
    out = []
    t = 0.0
    for actor, action, kw in [
        (WARRIOR, "attack", {"target_id": MAGE}),
        (MAGE, "spell", {"ability_name": "Fireball", "target_id": WARRIOR}),
        (WARRIOR, "spell", {"ability_name": "Cleave"}),
        (MAGE, "spell", {"ability_name": "Arcane Ward"}),
        (WARRIOR, "attack", {}),
        (MAGE, "flee", {}),
    ]:
        out.append(combat.act(actor, action, now=t, **kw))  # type: ignore[arg-type]
        t += 10.0
    return out


def test_same_seed_same_outcome(world: WorldDefinition) -> None:
    assert _script(world, 7) == _script(world, 7)
    amounts = {tuple(e.amount for r in _script(world, s) for e in r.events) for s in range(20)}
    assert len(amounts) > 1


def test_critical_hits_happen(world: WorldDefinition) -> None:
    crits = 0
    for seed in range(200):
        event = _duel(world, seed=seed).act(WARRIOR, "attack", now=0.0).events[0]
        crits += event.critical
    assert 0 < crits < 200


def test_defend_reduces_next_hit(world: WorldDefinition) -> None:
    for seed in range(30):
        guarded = _duel(world, seed=seed)
        guarded.act(MAGE, "defend", now=0.0)
        hit_guarded = guarded.act(WARRIOR, "attack", now=0.0).events[0].amount
        open_ = _duel(world, seed=seed)
        open_.act(WARRIOR, "defend", now=0.0)  # same sequence number, no effect on the mage
        hit_open = open_.act(WARRIOR, "attack", now=5.0).events[0].amount
        assert abs(hit_guarded - hit_open * (1 - world.rules.defend_reduction)) <= 1
    combat = _duel(world)
    combat.act(MAGE, "defend", now=0.0)
    assert _fighter(combat, MAGE).defending
    combat.act(MAGE, "attack", now=5.0)
    assert not _fighter(combat, MAGE).defending


# -- refusals -------------------------------------------------------------------------------


def test_acting_in_someone_elses_combat(world: WorldDefinition) -> None:
    combat = _duel(world)
    other = Combat.start(
        world,
        combat_id="c2",
        seed=2,
        participants=[_c(world, CLERIC, "Cleric", "a"), _c(world, ROGUE, "Rogue", "b")],
        now=0.0,
    )
    before = combat.snapshot()
    with refused(ErrorCode.NOT_IN_COMBAT):
        combat.act(CLERIC, "attack", now=0.0, target_id=MAGE)
    assert combat.snapshot() == before
    assert other.act(CLERIC, "attack", now=0.0).events[0].target_id == ROGUE


@pytest.mark.parametrize(
    ("actor", "action", "kwargs", "code"),
    [
        (WARRIOR, "dance", {}, ErrorCode.BAD_REQUEST),
        (WARRIOR, "attack", {"target_id": WARRIOR}, ErrorCode.INVALID_TARGET),
        (WARRIOR, "attack", {"target_id": 99}, ErrorCode.INVALID_TARGET),
        (WARRIOR, "spell", {}, ErrorCode.BAD_REQUEST),
        (WARRIOR, "spell", {"ability_name": "Fireball"}, ErrorCode.BAD_REQUEST),
        (WARRIOR, "spell", {"ability_name": "No Such"}, ErrorCode.BAD_REQUEST),
        (MAGE, "spell", {"ability_name": "Fireball", "target_id": MAGE}, ErrorCode.INVALID_TARGET),
        (
            MAGE,
            "spell",
            {"ability_name": "Arcane Ward", "target_id": WARRIOR},
            ErrorCode.INVALID_TARGET,
        ),
        (WARRIOR, "item", {}, ErrorCode.BAD_REQUEST),
        (WARRIOR, "item", {"item_id": 500}, ErrorCode.ITEM_NOT_OWNED),
        (WARRIOR, "item", {"item_id": 105}, ErrorCode.BAD_REQUEST),
        (WARRIOR, "item", {"item_id": 104, "target_id": WARRIOR}, ErrorCode.INVALID_TARGET),
        (WARRIOR, "item", {"item_id": 101, "target_id": MAGE}, ErrorCode.INVALID_TARGET),
    ],
)
def test_refusals_leave_state_unchanged(
    world: WorldDefinition, actor: int, action: str, kwargs: dict[str, int | str], code: ErrorCode
) -> None:
    combat = _duel(world, items={101: POTION, 104: BOMB, 105: SWORD})
    before = combat.snapshot()
    with pytest.raises(GameRuleError) as exc:
        combat.act(actor, action, now=0.0, **kwargs)  # type: ignore[arg-type]
    assert _code(exc) == code
    assert combat.snapshot() == before
    assert set(_fighter(combat, WARRIOR).items) == {101, 104, 105}


def test_global_cooldown(world: WorldDefinition) -> None:
    combat = _duel(world)
    combat.act(WARRIOR, "attack", now=100.0)
    with refused(ErrorCode.ON_COOLDOWN) as exc:
        combat.act(WARRIOR, "attack", now=100.0 + world.rules.global_cooldown_seconds / 2)
    assert exc.value.details["retry_at"] == 100.0 + world.rules.global_cooldown_seconds
    combat.act(WARRIOR, "attack", now=100.0 + world.rules.global_cooldown_seconds)


def test_ability_cooldown(world: WorldDefinition) -> None:
    fireball = world.ability("Fireball")
    assert fireball is not None and fireball.cooldown > world.rules.global_cooldown_seconds
    combat = _duel(world)
    combat.act(MAGE, "spell", now=0.0, ability_name="Fireball")
    t = world.rules.global_cooldown_seconds
    with refused(ErrorCode.ON_COOLDOWN) as exc:
        combat.act(MAGE, "spell", now=t, ability_name="Fireball")
    assert exc.value.details["retry_at"] == fireball.cooldown
    combat.act(MAGE, "spell", now=t, ability_name="Frost Lance")  # another spell is fine
    combat.act(MAGE, "spell", now=fireball.cooldown, ability_name="Fireball")


def test_mana(world: WorldDefinition) -> None:
    fireball = world.ability("Fireball")
    assert fireball is not None
    combat = _duel(world, mana=fireball.mana_cost - 1)
    with refused(ErrorCode.INSUFFICIENT_MANA):
        combat.act(MAGE, "spell", now=0.0, ability_name="Fireball")
    combat = _duel(world, mana=fireball.mana_cost)
    combat.act(MAGE, "spell", now=0.0, ability_name="Fireball")
    assert _fighter(combat, MAGE).mana == 0


# -- healing and items ----------------------------------------------------------------------


def _two_v_one(world: WorldDefinition, seed: int = 3) -> Combat:
    return Combat.start(
        world,
        combat_id="c3",
        seed=seed,
        participants=[
            _c(world, WARRIOR, "Warrior", "a"),
            _c(world, CLERIC, "Cleric", "a"),
            _c(world, ROGUE, "Rogue", "b"),
        ],
        now=0.0,
    )


def test_heal_ally_capped(world: WorldDefinition) -> None:
    combat = _two_v_one(world)
    warrior = _fighter(combat, WARRIOR)
    with refused(ErrorCode.INVALID_TARGET):
        combat.act(ROGUE, "attack", now=0.0)  # two opponents: a target is needed
    combat.act(ROGUE, "attack", now=0.0, target_id=WARRIOR)
    lost = warrior.max_health - warrior.health
    result = combat.act(CLERIC, "spell", now=0.0, ability_name="Mend", target_id=WARRIOR)
    (event,) = result.events
    assert event.kind == "heal" and event.amount == min(lost, event.amount)
    assert warrior.health == warrior.max_health or event.amount > 0
    assert event.target_health == warrior.health <= warrior.max_health
    full = combat.act(CLERIC, "spell", now=100.0, ability_name="Mend")  # self, at full health
    assert full.events[0].amount == 0 and full.events[0].target_id == CLERIC


def test_healing_potion(world: WorldDefinition) -> None:
    combat = _duel(world, health=10, items={101: POTION})
    result = combat.act(WARRIOR, "item", now=0.0, item_id=101)
    (event,) = result.events
    assert event.kind == "heal" and event.target_id == WARRIOR and event.item_id == 101
    assert event.amount > 0 and _fighter(combat, WARRIOR).health == 10 + event.amount
    assert result.consumed_item_id == 101
    with refused(ErrorCode.ITEM_NOT_OWNED):
        combat.act(WARRIOR, "item", now=10.0, item_id=101)


def test_bomb_and_mana_draught(world: WorldDefinition) -> None:
    combat = _duel(world, mana=0, items={104: BOMB, 103: MANA})
    bomb = combat.act(WARRIOR, "item", now=0.0, item_id=104)
    assert bomb.events[0].kind == "damage" and bomb.events[0].target_id == MAGE
    draught = world.item(MANA)
    assert draught is not None
    result = combat.act(MAGE, "item", now=0.0, item_id=103)
    assert result.events[0].kind == "mana"
    assert _fighter(combat, MAGE).mana == min(draught.mana, _fighter(combat, MAGE).max_mana)


# -- endings --------------------------------------------------------------------------------


def _fight_to_death(combat: Combat) -> ActionResult:
    t = 0.0
    for _ in range(500):
        result = combat.act(WARRIOR, "attack", now=t)
        if result.ended:
            return result
        t += 10.0
    raise AssertionError("nobody died")


def test_death_ends_combat(world: WorldDefinition) -> None:
    combat = _duel(world)
    result = _fight_to_death(combat)
    assert [e.kind for e in result.events] == ["damage", "death"]
    assert result.end is not None
    assert result.end.reason == "death" and result.end.winner_side == "a"
    assert result.end.dead == (MAGE,) and result.end.survivors == (WARRIOR,)
    assert _fighter(combat, MAGE).health == 0
    assert result.state["ended"] and result.state["end"]["reason"] == "death"
    with refused(ErrorCode.NOT_IN_COMBAT):
        combat.act(WARRIOR, "attack", now=1e6)


def _warrior_v_frail_mage_and_cleric(world: WorldDefinition, combat_id: str) -> Combat:
    """A Warrior against a Mage one hit from death and a Cleric who could heal her."""
    return Combat.start(
        world,
        combat_id=combat_id,
        seed=5,
        participants=[
            _c(world, WARRIOR, "Warrior", "a"),
            _c(world, MAGE, "Mage", "b", health=1),
            _c(world, CLERIC, "Cleric", "b"),
        ],
        now=0.0,
    )


def test_dead_cannot_act_or_be_healed(world: WorldDefinition) -> None:
    combat = _warrior_v_frail_mage_and_cleric(world, "c4")
    result = combat.act(WARRIOR, "attack", now=0.0, target_id=MAGE)
    assert not result.ended and result.events[-1].kind == "death"
    with refused(ErrorCode.FORBIDDEN):
        combat.act(MAGE, "attack", now=10.0)
    with refused(ErrorCode.INVALID_TARGET):
        combat.act(CLERIC, "spell", now=10.0, ability_name="Mend", target_id=MAGE)
    with refused(ErrorCode.INVALID_TARGET):
        combat.act(WARRIOR, "attack", now=10.0, target_id=MAGE)


def test_flee(world: WorldDefinition) -> None:
    outcomes = {}
    for seed in range(40):
        combat = _duel(world, seed=seed)
        result = combat.act(MAGE, "flee", now=0.0)
        outcomes[result.events[0].kind] = (combat, result)
    assert set(outcomes) == {"flee", "flee_failed"}
    combat, result = outcomes["flee"]
    assert result.end is not None and result.end.reason == "flight"
    assert result.end.winner_side == "a" and result.end.fled == (MAGE,)
    with refused(ErrorCode.NOT_IN_COMBAT):
        combat.act(MAGE, "attack", now=10.0)
    combat, result = outcomes["flee_failed"]
    assert not result.ended
    combat.act(WARRIOR, "attack", now=0.0)


def test_fled_member_leaves_fight_going(world: WorldDefinition) -> None:
    combat = _two_v_one(world)
    result = combat.withdraw(CLERIC, now=0.0)
    assert not result.ended and _fighter(combat, CLERIC).fled
    with refused(ErrorCode.INVALID_TARGET):
        combat.act(ROGUE, "attack", now=0.0, target_id=CLERIC)
    with refused(ErrorCode.NOT_IN_COMBAT):
        combat.act(CLERIC, "attack", now=0.0)
    assert combat.act(ROGUE, "attack", now=0.0).events[0].target_id == WARRIOR
    end = combat.withdraw(WARRIOR, now=1.0).end
    assert end is not None and end.reason == "flight" and end.winner_side == "b"
    assert set(end.fled) == {CLERIC, WARRIOR}


def test_withdraw_dead_or_absent(world: WorldDefinition) -> None:
    combat = _warrior_v_frail_mage_and_cleric(world, "c5")
    combat.act(WARRIOR, "attack", now=0.0, target_id=MAGE)
    result = combat.withdraw(MAGE, now=1.0)
    assert result.events == () and not result.ended
    assert not _fighter(combat, MAGE).fled
    with refused(ErrorCode.NOT_IN_COMBAT):
        combat.withdraw(99, now=1.0)
    combat.withdraw(CLERIC, now=1.0)
    with refused(ErrorCode.NOT_IN_COMBAT):
        combat.withdraw(WARRIOR, now=1.0)


def test_save_and_resume_gives_same_future(world: WorldDefinition) -> None:
    straight = _duel(world, seed=99, items={101: POTION})
    saved = _duel(world, seed=99, items={101: POTION})
    straight.act(WARRIOR, "attack", now=0.0)
    saved.act(WARRIOR, "attack", now=0.0)
    saved.act(MAGE, "spell", now=0.0, ability_name="Fireball")
    straight.act(MAGE, "spell", now=0.0, ability_name="Fireball")
    resumed = Combat.from_dict(world, json.loads(json.dumps(saved.to_dict())))
    assert resumed.snapshot() == straight.snapshot()
    with pytest.raises(GameRuleError) as exc:
        resumed.act(MAGE, "spell", now=1.0, ability_name="Fireball")
    assert _code(exc) == ErrorCode.ON_COOLDOWN  # cooldowns survive the round trip
    t = 10.0
    while not straight.ended:
        a = straight.act(WARRIOR, "attack", now=t)
        b = resumed.act(WARRIOR, "attack", now=t)
        assert a == b
        t += 10.0
    again = Combat.from_dict(world, resumed.to_dict())
    assert again.end == straight.end and again.ended


def test_restore_puts_the_same_object_back(world: WorldDefinition) -> None:
    combat = _duel(world, seed=7, items={101: POTION})
    before = combat.to_dict()
    combat.act(WARRIOR, "attack", now=0.0)
    combat.act(MAGE, "item", now=0.0, item_id=101)
    combat.restore(before)
    assert combat.to_dict() == before
    assert _fighter(combat, MAGE).items == {101: POTION}


# -- the lobby's book of running combats -----------------------------------------------------

CLASSES = {WARRIOR: "Warrior", MAGE: "Mage", CLERIC: "Cleric", ROGUE: "Rogue"}


def _start(book: CombatBook, world: WorldDefinition, combat_id: str, a: int, b: int) -> Combat:
    fighters = [_c(world, a, CLASSES[a], "a"), _c(world, b, CLASSES[b], "b")]
    return book.add(
        Combat.start(world, combat_id=combat_id, seed=1, participants=fighters, now=0.0)
    )


def test_book_opponents_distinct_without_the_attacker(world: WorldDefinition) -> None:
    book = CombatBook(max_opponents=2)
    assert book.opponents(WARRIOR, [MAGE, WARRIOR, MAGE, CLERIC]) == [MAGE, CLERIC]
    for named in ([], [WARRIOR], [MAGE, CLERIC, ROGUE]):
        with refused(ErrorCode.INVALID_TARGET):
            book.opponents(WARRIOR, named)
    assert CombatBook().max_opponents == 8


def test_book_one_fight_per_character(world: WorldDefinition) -> None:
    book = CombatBook()
    first = _start(book, world, "c1", WARRIOR, MAGE)
    assert book.in_combat(MAGE) and book.combat_of(MAGE) is first
    assert book.require("c1") is first and len(book) == 1
    with pytest.raises(GameRuleError) as exc:
        book.check_free([CLERIC, MAGE])
    assert _code(exc) == ErrorCode.CONFLICT and exc.value.details == {"character_id": MAGE}
    with pytest.raises(GameRuleError) as exc:  # the check inside add, after the awaits
        _start(book, world, "c2", CLERIC, MAGE)
    assert _code(exc) == ErrorCode.CONFLICT
    assert not book.in_combat(CLERIC) and book.get("c2") is None
    with pytest.raises(GameRuleError) as exc:
        _start(book, world, "c1", CLERIC, ROGUE)
    assert _code(exc) == ErrorCode.CONFLICT and not book.in_combat(ROGUE)


def test_book_finish_frees_the_fighters(world: WorldDefinition) -> None:
    book = CombatBook()
    combat = _start(book, world, "c1", WARRIOR, MAGE)
    combat.withdraw(MAGE, now=0.0)
    assert combat.ended and book.finish(combat)
    assert not book.finish(combat)  # already forgotten
    assert not book.in_combat(WARRIOR) and book.combat_of(MAGE) is None
    with refused(ErrorCode.NOT_IN_COMBAT):
        book.require("c1")
    again = _start(book, world, "c2", MAGE, WARRIOR)
    assert book.combat_of(WARRIOR) is again
