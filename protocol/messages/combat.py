"""Combat messages: COMBAT_START, _ACTION, _DAMAGE, _HEAL, _END, _STATE.

Combat is resolved by the lobby: clients send COMBAT_ACTION, the lobby answers
with damage, heal, state and end messages.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from protocol.messages.base import (
    BaseMessage,
    Count,
    Gold,
    Id,
    Level,
    MessageType,
    Name,
    Points,
    RefId,
    StrictModel,
)

__all__ = [
    "ActionType",
    "CombatActionMessage",
    "CombatDamageMessage",
    "CombatEndMessage",
    "CombatHealMessage",
    "CombatStartMessage",
    "CombatStateMessage",
    "Combatant",
    "MAX_COMBATANTS",
]

MAX_COMBATANTS = 64
ActionType = Literal["attack", "spell", "item", "flee", "defend"]


class Combatant(StrictModel):
    """One side's fighter (a character or an NPC) in a combat."""

    id: Id
    name: Name
    health: Points
    max_health: Points
    level: Level | None = None
    is_npc: bool = False
    team: Name | None = None


class CombatStartMessage(BaseMessage):
    """A combat began."""

    type: Literal[MessageType.COMBAT_START] = MessageType.COMBAT_START
    combat_id: RefId
    location_id: Id | None = None
    initiator_id: Id | None = None
    participants: list[Combatant] = Field(default_factory=list, max_length=MAX_COMBATANTS)


class CombatActionMessage(BaseMessage):
    """A player's combat action (``actor_id`` is set by the lobby from the session)."""

    type: Literal[MessageType.COMBAT_ACTION] = MessageType.COMBAT_ACTION
    combat_id: RefId
    action_type: ActionType
    actor_id: Id | None = None
    target_id: Id | None = None
    ability_name: Name | None = None
    item_id: Id | None = None


class CombatDamageMessage(BaseMessage):
    """Damage was dealt."""

    type: Literal[MessageType.COMBAT_DAMAGE] = MessageType.COMBAT_DAMAGE
    combat_id: RefId
    source_id: Id | None = None
    source_name: Name | None = None
    target_id: Id
    target_name: Name | None = None
    amount: Points
    damage_type: Name | None = None
    critical: bool = False
    target_health: Points | None = None


class CombatHealMessage(BaseMessage):
    """Health was restored."""

    type: Literal[MessageType.COMBAT_HEAL] = MessageType.COMBAT_HEAL
    combat_id: RefId
    source_id: Id | None = None
    source_name: Name | None = None
    target_id: Id
    target_name: Name | None = None
    amount: Points
    target_health: Points | None = None


class CombatEndMessage(BaseMessage):
    """A combat ended."""

    type: Literal[MessageType.COMBAT_END] = MessageType.COMBAT_END
    combat_id: RefId
    result: Literal["victory", "defeat", "fled", "draw", "aborted"]
    winner_ids: list[Id] = Field(default_factory=list, max_length=MAX_COMBATANTS)
    experience_gained: Gold | None = None
    gold_gained: Gold | None = None


class CombatStateMessage(BaseMessage):
    """The combat's full current state."""

    type: Literal[MessageType.COMBAT_STATE] = MessageType.COMBAT_STATE
    combat_id: RefId
    round: Count = 0
    active: bool = True
    current_turn: Id | None = None
    participants: list[Combatant] = Field(default_factory=list, max_length=MAX_COMBATANTS)
