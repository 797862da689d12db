"""Combat against a real lobby: checks, seeded outcomes replayed with the pure rules, storage."""

from __future__ import annotations

from typing import Any

from lobby import MasterServer
from lobby.game.combat import Combat, make_combatant
from lobby.services.combat import CombatService
from tests.lobby.services.conftest import MakePlayer
from tests.lobby.services.players import GamePlayer
from tests.lobby.support import FakeClock


def target(p: GamePlayer) -> dict[str, Any]:
    return {"id": p.id, "name": p.name, "health": 1, "max_health": 1}


async def test_combat_rules_outcomes_and_persistence(
    server: MasterServer, make_player: MakePlayer, game_clock: FakeClock
) -> None:
    world = server.ctx.world
    warrior = await make_player(character_class="Warrior")
    mage = await make_player(character_class="Mage", faction="Azure Syndicate")
    outsider = await make_player(character_class="Rogue")

    # Haven's Rest is safe; the opponent must stand here
    assert await warrior.refused("combat_start", combat_id="x", participants=[target(mage)]) == (
        "forbidden"
    )
    await warrior.request("move", to_location_id=2)
    assert await warrior.refused("combat_start", combat_id="x", participants=[target(mage)]) == (
        "invalid_target"
    )
    await mage.request("move", to_location_id=2)
    await outsider.request("move", to_location_id=2)
    started = await warrior.request("combat_start", combat_id="x", participants=[target(mage)])
    combat_id, seed = started["details"]["combat_id"], started["details"]["seed"]
    start = await mage.next("combat_start", combat_id=combat_id)
    assert {p["id"] for p in start["participants"]} == {warrior.id, mage.id}

    # the same fight in the pure rules, to replay each outcome
    inv_w = {i["item_id"]: i["template_id"] for i in (await _inv(warrior))["items"]}
    inv_m = {i["item_id"]: i["template_id"] for i in (await _inv(mage))["items"]}
    replay = Combat.start(
        world,
        combat_id=combat_id,
        seed=seed,
        now=game_clock(),
        location_id=2,
        participants=[
            make_combatant(
                world,
                character_id=p.id,
                name=p.name,
                class_name=class_name,
                level=1,
                side=side,
                items=inv,
            )
            for p, class_name, side, inv in (
                (warrior, "Warrior", "attackers", inv_w),
                (mage, "Mage", "defenders", inv_m),
            )
        ],
    )

    # refusals: someone else's combat, someone else's name, a target outside, too fast
    refusals = [
        (outsider, {"action_type": "attack", "target_id": mage.id}, "not_in_combat"),
        (warrior, {"action_type": "attack", "actor_id": mage.id}, "forbidden"),
        (warrior, {"action_type": "attack", "target_id": outsider.id}, "invalid_target"),
        (warrior, {"action_type": "item", "item_id": next(iter(inv_m))}, "item_not_owned"),
    ]
    for who, action, code in refusals:
        assert await who.refused("combat_action", combat_id=combat_id, **action) == code, action
    assert await warrior.refused("move", to_location_id=1) == "invalid_move"
    assert (
        await outsider.refused("combat_start", combat_id="y", participants=[target(mage)])
        == "conflict"
    )

    async def act(p: GamePlayer, **action: Any) -> None:
        expected = replay.act(
            p.id,
            action["action_type"],
            now=game_clock(),
            **{k: v for k, v in action.items() if k != "action_type"},
        )
        await p.request("combat_action", combat_id=combat_id, **action)
        for ev in expected.events:
            if ev.kind in ("damage", "heal"):
                got = await mage.next(
                    f"combat_{ev.kind}", combat_id=combat_id, target_id=ev.target_id
                )
                assert got["amount"] == ev.amount and got["source_id"] == ev.actor_id
                assert got["target_health"] == ev.target_health
        state = await mage.next("combat_state", combat_id=combat_id)
        assert {c["id"]: c["health"] for c in state["participants"]} == {
            c.character_id: c.health for c in replay.participants()
        }

    await act(warrior, action_type="attack", target_id=mage.id)
    assert (
        await warrior.refused("combat_action", combat_id=combat_id, action_type="attack")
        == "on_cooldown"
    )
    await act(mage, action_type="spell", ability_name="Fireball", target_id=warrior.id)
    game_clock.advance(world.rules.global_cooldown_seconds)
    potion = next(i for i, t in inv_w.items() if t == 1)
    await act(warrior, action_type="item", item_id=potion)
    assert potion not in [i["item_id"] for i in (await _inv(warrior))["items"]]
    await act(mage, action_type="spell", ability_name="Arcane Ward")

    # fight to the end
    rounds = 0
    while not replay.ended:
        rounds += 1
        assert rounds < 100
        game_clock.advance(world.rules.global_cooldown_seconds)
        await act(warrior, action_type="attack")
        if replay.ended:
            break
        await act(mage, action_type="attack")
    end_w = await warrior.next("combat_end", combat_id=combat_id)
    end_m = await mage.next("combat_end", combat_id=combat_id)
    winner = replay.end.winner_side if replay.end else None
    assert end_w["result"] == ("victory" if winner == "attackers" else "defeat")
    assert end_m["result"] == ("victory" if winner == "defenders" else "defeat")
    assert not await server.ctx.services.require(CombatService).in_combat(warrior.id)

    # health persisted: the survivor as the fight left it, the defeated wounded at 1
    _, chars_w = await warrior.rest("GET", "/api/characters")
    _, chars_m = await mage.rest("GET", "/api/characters")
    final = {c.character_id: c for c in replay.participants()}
    for body, p in ((chars_w, warrior), (chars_m, mage)):
        stored = body["characters"][0]["health"]
        assert stored == (final[p.id].health if final[p.id].alive else 1)
        assert (await p.next("character_update", character_id=p.id))["health"] == stored
    assert (
        await warrior.refused("combat_action", combat_id=combat_id, action_type="attack")
        == "not_in_combat"
    )
    await warrior.request("move", to_location_id=1)  # free to go


async def test_leaving_withdraws_from_combat(server: MasterServer, make_player: MakePlayer) -> None:
    a = await make_player()
    b = await make_player()
    await a.request("move", to_location_id=2)
    await b.request("move", to_location_id=2)
    combat_id = (await a.request("combat_start", combat_id="x", participants=[target(b)]))[
        "details"
    ]["combat_id"]
    await b.disconnect()
    end = await a.next("combat_end", combat_id=combat_id)
    assert end["result"] == "victory" and end["winner_ids"] == [a.id]
    await a.request("move", to_location_id=1)


async def _inv(p: GamePlayer) -> dict[str, Any]:
    status, body = await p.rest("GET", "/api/inventory")
    assert status == 200
    return dict(body)
