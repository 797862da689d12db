"""Tests of the protocol messages built from game state: valid, and round-tripping."""

from __future__ import annotations

from lobby.game.combat import Combat, make_combatant
from lobby.game.messages import (
    aetherfall_message,
    combat_end_message,
    combat_result_messages,
    combat_start_message,
    combat_state_message,
    party_update_message,
    reality_shift_message,
    shard_captured_message,
    shard_status_message,
    trade_complete_message,
    trade_update_message,
    world_state_message,
)
from lobby.game.party import Party
from lobby.game.shards import ShardBoard, ShardState, aetherfall_event
from lobby.game.trade import Trade
from lobby.game.world import WorldDefinition
from protocol import (
    BaseMessage,
    CombatDamageMessage,
    CombatHealMessage,
    CombatStateMessage,
    MessageType,
    WorldEvent,
    deserialize,
    serialize,
)


def _round_trip(msg: BaseMessage) -> None:
    again = deserialize(serialize(msg))
    assert again == msg


def test_world_messages(world: WorldDefinition) -> None:
    threshold = world.rules.reality_shift_threshold
    states = [
        ShardState(s.id, "Azure Syndicate", 1.0, 5, "Mira") for s in world.shards[1:threshold]
    ]
    board = ShardBoard(world, states=states)
    shard = world.shards[0]
    out = board.capture(
        shard.id,
        character_id=9,
        faction="Azure Syndicate",
        location_id=shard.location_id,
        now=10.0,
        character_name="Kael",
    )
    captured = shard_captured_message(out, "Kael")
    assert captured.type is MessageType.SHARD_CAPTURED
    assert (captured.shard_name, captured.faction, captured.character_id) == (
        "Phoenix Flame",
        "Azure Syndicate",
        9,
    )
    assert captured.location_id == shard.location_id and captured.previous_faction is None
    _round_trip(captured)

    assert out.reality_shift is not None
    shift = reality_shift_message(out.reality_shift)
    assert shift.new_reality == world.realities[1] and shift.previous_reality == world.realities[0]
    assert "Azure Syndicate" in (shift.reason or "")
    _round_trip(shift)

    status = shard_status_message(board, [shard.id])
    assert [s.shard_id for s in status.shards] == [shard.id]
    assert status.shards[0].owner_faction == "Azure Syndicate"
    assert status.shards[0].captured_by == "Kael"
    _round_trip(status)
    assert len(shard_status_message(board).shards) == len(world.shards)

    event = aetherfall_event(world, seed=3, now=20.0)
    state = world_state_message(
        board,
        aetherfall=event,
        online_players=4,
        recent_events=[WorldEvent(event_type="shard_captured", description="x", timestamp=10.0)],
    )
    assert state.current_reality == world.realities[1]
    assert state.faction_scores["Azure Syndicate"] == threshold
    assert state.aetherfall_active
    assert state.aetherfall_ends_at == 20.0 + world.rules.aetherfall_duration_seconds
    _round_trip(state)
    quiet = world_state_message(board)
    assert not quiet.aetherfall_active and quiet.aetherfall_ends_at is None

    fall = aetherfall_message(event)
    assert fall.active and fall.location_id == event.epicentre_id
    assert fall.ends_at == event.ends_at
    assert not aetherfall_message(event, active=False).active
    assert fall.intensity is not None and 1 <= fall.intensity <= 10
    assert event.epicentre_name in (fall.description or "")
    _round_trip(fall)


def test_party_update_message(world: WorldDefinition) -> None:
    party, _ = Party.create(
        "p-1", leader_id=1, leader_name="Lead", now=0.0, rules=world.rules, name="Dawnbreakers"
    )
    party.invite(1, 2, account_id=20, now=0.0)
    party.accept(2, "Bea", account_id=20, now=1.0)
    msg = party_update_message(party, levels={1: 5}, locations={2: 3}, online={2: False})
    assert msg.party_id == "p-1" and msg.name == "Dawnbreakers" and msg.leader_id == 1
    assert [(m.character_id, m.character_name, m.is_leader) for m in msg.members] == [
        (1, "Lead", True),
        (2, "Bea", False),
    ]
    assert msg.members[0].level == 5 and msg.members[1].location_id == 3
    assert msg.members[0].online and not msg.members[1].online
    _round_trip(msg)
    party.disband(1, now=2.0)
    gone = party_update_message(party)
    assert gone.members == [] and gone.leader_id is None


def _combat(world: WorldDefinition) -> Combat:
    return Combat.start(
        world,
        combat_id="fight-1",
        seed=11,
        participants=[
            make_combatant(
                world, character_id=1, name="Ash", class_name="Warrior", level=1, side="a"
            ),
            make_combatant(
                world,
                character_id=2,
                name="Bryn",
                class_name="Cleric",
                level=1,
                side="a",
                health=50,
            ),
            make_combatant(
                world, character_id=3, name="Cor", class_name="Rogue", level=1, side="b", health=30
            ),
        ],
        now=0.0,
    )


def test_combat_messages(world: WorldDefinition) -> None:
    combat = _combat(world)
    start = combat_start_message(combat, initiator_id=1)
    assert [p.id for p in start.participants] == [1, 2, 3]
    assert start.participants[2].team == "b"
    _round_trip(start)
    assert combat_end_message(combat, 1).result == "aborted"

    result = combat.act(2, "spell", now=0.0, ability_name="Mend")
    msgs = combat_result_messages(combat, result)
    assert isinstance(msgs[0], CombatHealMessage) and msgs[0].target_name == "Bryn"
    assert isinstance(msgs[-1], CombatStateMessage) and msgs[-1].round == 1
    for m in msgs:
        _round_trip(m)

    t = 0.0
    while not result.ended:
        result = combat.act(1, "attack", now=t, target_id=3)
        t += 5.0
    msgs = combat_result_messages(combat, result)
    damage = msgs[0]
    assert isinstance(damage, CombatDamageMessage)
    assert (
        damage.source_name == "Ash" and damage.target_health == 0 and damage.damage_type == "attack"
    )
    state = combat_state_message(combat)
    assert not state.active
    assert combat_end_message(combat, 1).result == "victory"
    assert combat_end_message(combat, 3).result == "defeat"
    spectator = combat_end_message(combat)
    assert spectator.result == "victory" and spectator.winner_ids == [1, 2]
    _round_trip(spectator)


def test_combat_end_fled_and_draw(world: WorldDefinition) -> None:
    combat = _combat(world)
    combat.withdraw(3, now=0.0)
    assert combat_end_message(combat, 3).result == "fled"
    assert combat_end_message(combat, 1).result == "victory"
    combat = _combat(world)
    combat.withdraw(1, now=0.0)
    combat.withdraw(2, now=0.0)
    assert combat_end_message(combat, 3).result == "victory"
    assert combat_end_message(combat, 1).result == "fled"


def test_trade_messages(world: WorldDefinition) -> None:
    trade = Trade.request("tr-1", initiator_id=1, partner_id=2, now=0.0, rules=world.rules)
    trade.accept(2, now=1.0)
    trade.update_offer(1, items={40: 2}, gold=15)
    trade.confirm(1)
    update = trade_update_message(trade, item_names={40: "Minor Healing Potion"})
    first, second = update.offers
    assert first.character_id == 1 and first.gold == 15 and first.confirmed
    assert first.items[0].item_id == 40 and first.items[0].quantity == 2
    assert first.items[0].name == "Minor Healing Potion"
    assert second.character_id == 2 and not second.confirmed and second.items == []
    _round_trip(update)
    trade.confirm(2)
    trade.committed()
    done = trade_complete_message(trade)
    assert done.success and done.reason is None
    _round_trip(done)
    failed = Trade.request("tr-2", initiator_id=1, partner_id=2, now=0.0, rules=world.rules)
    failed.accept(2, now=0.0)
    failed.update_offer(2, items=[5], gold=0)
    failed.confirm(1)
    failed.confirm(2)
    failed.failed("item 5 changed hands")
    msg = trade_complete_message(failed)
    assert not msg.success and msg.reason == "item 5 changed hands"
