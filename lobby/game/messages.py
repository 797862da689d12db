"""Protocol messages built from game state: what the lobby sends after a rule ran.

Pure functions from the rule modules' values to :mod:`protocol` message models, so
the hub layer only chooses recipients. Extra display data the rules do not hold
(levels, locations, online flags, names) is passed in as mappings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

from lobby.game.combat import ActionResult, Combat
from lobby.game.party import Party
from lobby.game.shards import AetherfallEvent, CaptureOutcome, RealityShift, ShardBoard
from lobby.game.trade import Trade, TradeStatus
from protocol import (
    AetherfallMessage,
    BaseMessage,
    CombatDamageMessage,
    CombatEndMessage,
    CombatHealMessage,
    CombatStartMessage,
    CombatStateMessage,
    PartyUpdateMessage,
    RealityShiftMessage,
    ShardCapturedMessage,
    ShardInfo,
    ShardStatusMessage,
    TradeCompleteMessage,
    TradeItem,
    TradeOffer,
    TradeUpdateMessage,
    WorldEvent,
    WorldStateMessage,
)
from protocol import Combatant as CombatantInfo
from protocol import PartyMember as PartyMemberInfo

__all__ = [
    "aetherfall_message",
    "combat_end_message",
    "combat_result_messages",
    "combat_start_message",
    "combat_state_message",
    "party_update_message",
    "reality_shift_message",
    "shard_captured_message",
    "shard_infos",
    "shard_status_message",
    "trade_complete_message",
    "trade_update_message",
    "world_state_message",
]


# -- world ----------------------------------------------------------------------------------


def shard_infos(board: ShardBoard, shard_ids: Iterable[int] | None = None) -> list[ShardInfo]:
    """``ShardInfo`` for the given shards (all of them by default), in world order."""
    wanted = None if shard_ids is None else set(shard_ids)
    out = []
    for state in board.states():
        if wanted is not None and state.shard_id not in wanted:
            continue
        shard = board.world.shard(state.shard_id)
        if shard is None:  # pragma: no cover - a board only holds the world's shards
            continue
        out.append(
            ShardInfo(
                shard_id=shard.id,
                shard_name=shard.name,
                owner_faction=state.owner,
                location_id=shard.location_id,
                captured_by=state.captured_by_name,
                captured_at=state.captured_at,
            )
        )
    return out


def shard_status_message(
    board: ShardBoard, shard_ids: Iterable[int] | None = None
) -> ShardStatusMessage:
    return ShardStatusMessage(shards=shard_infos(board, shard_ids))


def world_state_message(
    board: ShardBoard,
    *,
    aetherfall: AetherfallEvent | None = None,
    online_players: int | None = None,
    recent_events: Iterable[WorldEvent] = (),
) -> WorldStateMessage:
    """WORLD_STATE: reality, shards, shards held per faction, the active Aetherfall if any."""
    return WorldStateMessage(
        current_reality=board.reality,
        shards=shard_infos(board),
        faction_scores=board.counts(),
        aetherfall_active=aetherfall is not None,
        aetherfall_ends_at=aetherfall.ends_at if aetherfall is not None else None,
        online_players=online_players,
        recent_events=list(recent_events),
    )


def shard_captured_message(outcome: CaptureOutcome, character_name: str) -> ShardCapturedMessage:
    state = outcome.state
    return ShardCapturedMessage(
        shard_id=outcome.shard.id,
        shard_name=outcome.shard.name,
        character_id=state.captured_by if state.captured_by is not None else 0,
        character_name=character_name,
        faction=state.owner or "",
        previous_faction=outcome.previous_owner,
        location_id=outcome.shard.location_id,
    )


def reality_shift_message(shift: RealityShift) -> RealityShiftMessage:
    return RealityShiftMessage(
        new_reality=shift.to_reality,
        previous_reality=shift.from_reality,
        reason=f"{shift.faction} holds {shift.shards_held} Crystal Shards",
    )


def aetherfall_message(event: AetherfallEvent, *, active: bool = True) -> AetherfallMessage:
    """AETHERFALL at the epicentre (``active=False``: it ended); intensity grows with damage."""
    names = ", ".join(str(i) for i in event.struck_location_ids)
    released = (
        f"; shards torn loose: {', '.join(str(i) for i in event.released_shard_ids)}"
        if event.released_shard_ids
        else ""
    )
    return AetherfallMessage(
        active=active,
        location_id=event.epicentre_id,
        intensity=max(1, min(10, 1 + event.damage // 10)),
        starts_at=event.at,
        ends_at=event.ends_at,
        description=(
            f"The Aether falls on {event.epicentre_name}: {event.damage} damage at "
            f"locations {names}{released}"
        ),
    )


# -- party ----------------------------------------------------------------------------------


def party_update_message(
    party: Party,
    *,
    levels: Mapping[int, int] | None = None,
    locations: Mapping[int, int] | None = None,
    online: Mapping[int, bool] | None = None,
) -> PartyUpdateMessage:
    """PARTY_UPDATE: members in join order, the leader flagged."""
    return PartyUpdateMessage(
        party_id=party.party_id,
        name=party.name,
        leader_id=party.leader_id if not party.disbanded else None,
        members=[
            PartyMemberInfo(
                character_id=m.character_id,
                character_name=m.name,
                level=(levels or {}).get(m.character_id),
                location_id=(locations or {}).get(m.character_id),
                is_leader=m.character_id == party.leader_id,
                online=(online or {}).get(m.character_id, True),
            )
            for m in party.members
        ],
    )


# -- combat ---------------------------------------------------------------------------------


def _combatants(combat: Combat) -> list[CombatantInfo]:
    return [
        CombatantInfo(
            id=c.character_id,
            name=c.name,
            health=c.health,
            max_health=c.max_health,
            level=c.level,
            team=c.side,
        )
        for c in combat.participants()
    ]


def combat_start_message(combat: Combat, *, initiator_id: int | None = None) -> CombatStartMessage:
    return CombatStartMessage(
        combat_id=combat.combat_id,
        location_id=combat.location_id,
        initiator_id=initiator_id,
        participants=_combatants(combat),
    )


def combat_state_message(combat: Combat) -> CombatStateMessage:
    return CombatStateMessage(
        combat_id=combat.combat_id,
        round=combat.seq,
        active=not combat.ended,
        participants=_combatants(combat),
    )


def combat_end_message(combat: Combat, character_id: int | None = None) -> CombatEndMessage:
    """COMBAT_END as ``character_id`` sees it (victory, defeat, fled, draw).

    Without ``character_id`` (spectators, logs): victory if a side won, else draw.
    """
    end = combat.end
    if end is None:
        return CombatEndMessage(combat_id=combat.combat_id, result="aborted")
    winners = [
        c.character_id for c in combat.participants() if c.side == end.winner_side and c.active
    ]
    me = combat.participant(character_id) if character_id is not None else None
    result: Literal["victory", "defeat", "fled", "draw"]
    if end.winner_side is None:
        result = "draw"
    elif me is None:
        result = "victory"
    elif me.side == end.winner_side:
        result = "victory"
    elif me.fled:
        result = "fled"
    else:
        result = "defeat"
    return CombatEndMessage(combat_id=combat.combat_id, result=result, winner_ids=winners)


def combat_result_messages(combat: Combat, result: ActionResult) -> list[BaseMessage]:
    """COMBAT_DAMAGE / COMBAT_HEAL per event, then COMBAT_STATE (to every participant).

    COMBAT_END is per recipient: build it with :func:`combat_end_message` when
    ``result.ended``.
    """
    names = {c.character_id: c.name for c in combat.participants()}
    out: list[BaseMessage] = []
    for ev in result.events:
        if ev.target_id is None:
            continue
        if ev.kind == "damage":
            out.append(
                CombatDamageMessage(
                    combat_id=combat.combat_id,
                    source_id=ev.actor_id,
                    source_name=names.get(ev.actor_id),
                    target_id=ev.target_id,
                    target_name=names.get(ev.target_id),
                    amount=ev.amount,
                    damage_type=ev.ability_name or ("item" if ev.item_id else "attack"),
                    critical=ev.critical,
                    target_health=ev.target_health,
                )
            )
        elif ev.kind == "heal":
            out.append(
                CombatHealMessage(
                    combat_id=combat.combat_id,
                    source_id=ev.actor_id,
                    source_name=names.get(ev.actor_id),
                    target_id=ev.target_id,
                    target_name=names.get(ev.target_id),
                    amount=ev.amount,
                    target_health=ev.target_health,
                )
            )
    out.append(combat_state_message(combat))
    return out


# -- trade ----------------------------------------------------------------------------------


def _offers(trade: Trade, item_names: Mapping[int, str] | None) -> list[TradeOffer]:
    return [
        TradeOffer(
            character_id=cid,
            items=[
                TradeItem(item_id=i, name=(item_names or {}).get(i), quantity=q)
                for i, q in trade.offers[cid].items
            ],
            gold=trade.offers[cid].gold,
            confirmed=cid in trade.confirmed,
        )
        for cid in trade.participants
    ]


def trade_update_message(
    trade: Trade, *, item_names: Mapping[int, str] | None = None
) -> TradeUpdateMessage:
    """TRADE_UPDATE with the whole window (``offers``: both sides and confirmations)."""
    return TradeUpdateMessage(trade_id=trade.trade_id, offers=_offers(trade, item_names))


def trade_complete_message(
    trade: Trade, *, item_names: Mapping[int, str] | None = None
) -> TradeCompleteMessage:
    """TRADE_COMPLETE: success once committed, else the cancel reason."""
    success = trade.status is TradeStatus.COMPLETED
    return TradeCompleteMessage(
        trade_id=trade.trade_id,
        success=success,
        offers=_offers(trade, item_names),
        reason=None if success else (trade.cancel_reason or trade.status.value),
    )
