"""Combat values: combatants built from class and level, events, endings, action results.

Split from :mod:`lobby.game.combat` (the rules) so each stays small; import either.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from lobby.game._common import refuse
from lobby.game.world import ClassDef, WorldDefinition
from protocol.errors import ErrorCode
from protocol.messages.combat import ActionType

__all__ = [
    "ACTION_TYPES",
    "ActionResult",
    "ActionType",
    "CombatEnd",
    "CombatEvent",
    "Combatant",
    "EventKind",
    "make_combatant",
    "stats_for",
]

ACTION_TYPES: frozenset[str] = frozenset(get_args(ActionType))
EventKind = Literal["damage", "heal", "mana", "defend", "flee", "flee_failed", "death"]


@dataclass
class Combatant:
    """One fighter. ``items`` maps the item ids a client may send to item template ids."""

    character_id: int
    name: str
    side: str
    class_name: str
    level: int
    max_health: int
    health: int
    max_mana: int
    mana: int
    attack: int
    defense: int
    abilities: tuple[str, ...] = ()
    items: dict[int, int] = field(default_factory=dict)
    fled: bool = False
    defending: bool = False
    next_action_at: float = 0.0
    cooldowns: dict[str, float] = field(default_factory=dict)

    @property
    def alive(self) -> bool:
        return self.health > 0

    @property
    def active(self) -> bool:
        return self.alive and not self.fled

    def to_dict(self) -> dict[str, Any]:
        return {
            "character_id": self.character_id,
            "name": self.name,
            "side": self.side,
            "class_name": self.class_name,
            "level": self.level,
            "health": self.health,
            "max_health": self.max_health,
            "mana": self.mana,
            "max_mana": self.max_mana,
            "alive": self.alive,
            "fled": self.fled,
            "defending": self.defending,
            "next_action_at": self.next_action_at,
            "cooldowns": dict(sorted(self.cooldowns.items())),
        }


@dataclass(frozen=True, slots=True)
class CombatEvent:
    """One thing that happened; ``damage`` / ``heal`` become COMBAT_DAMAGE / COMBAT_HEAL."""

    kind: EventKind
    actor_id: int
    target_id: int | None = None
    amount: int = 0
    ability_name: str | None = None
    item_id: int | None = None
    critical: bool = False
    target_health: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "actor_id": self.actor_id,
            "target_id": self.target_id,
            "amount": self.amount,
            "ability_name": self.ability_name,
            "item_id": self.item_id,
            "critical": self.critical,
            "target_health": self.target_health,
        }


@dataclass(frozen=True, slots=True)
class CombatEnd:
    """How the combat ended (the COMBAT_END payload)."""

    reason: Literal["death", "flight"]
    winner_side: str | None
    survivors: tuple[int, ...]
    fled: tuple[int, ...]
    dead: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "winner_side": self.winner_side,
            "survivors": list(self.survivors),
            "fled": list(self.fled),
            "dead": list(self.dead),
        }


@dataclass(frozen=True, slots=True)
class ActionResult:
    """The outcome of one accepted action; ``state`` is the COMBAT_STATE payload after it.

    ``consumed_item_id``: the item the storage layer must remove from the actor.
    """

    action_type: str
    actor_id: int
    events: tuple[CombatEvent, ...]
    consumed_item_id: int | None
    end: CombatEnd | None
    state: dict[str, Any]

    @property
    def ended(self) -> bool:
        return self.end is not None


def stats_for(class_def: ClassDef, level: int) -> tuple[int, int, int, int]:
    """(max_health, max_mana, attack, defense) of a class at ``level`` (1-based)."""
    grown = max(level, 1) - 1
    return (
        class_def.base_health + class_def.health_per_level * grown,
        class_def.base_mana + class_def.mana_per_level * grown,
        class_def.base_attack + class_def.attack_per_level * grown,
        class_def.base_defense + class_def.defense_per_level * grown,
    )


def make_combatant(
    world: WorldDefinition,
    *,
    character_id: int,
    name: str,
    class_name: str,
    level: int,
    side: str,
    health: int | None = None,
    mana: int | None = None,
    items: Mapping[int, int] | None = None,
) -> Combatant:
    """A combatant from a stored character; ``health``/``mana`` None mean full, else clamped."""
    class_def = world.class_def(class_name)
    if class_def is None:
        refuse(ErrorCode.VALIDATION_ERROR, f"unknown class {class_name!r}", class_name=class_name)
    if not 1 <= level <= world.rules.max_level:
        refuse(
            ErrorCode.VALIDATION_ERROR,
            f"level {level} outside 1..{world.rules.max_level}",
            level=level,
        )
    max_health, max_mana, attack, defense = stats_for(class_def, level)
    return Combatant(
        character_id=character_id,
        name=name,
        side=side,
        class_name=class_name,
        level=level,
        max_health=max_health,
        health=max_health if health is None else max(0, min(health, max_health)),
        max_mana=max_mana,
        mana=max_mana if mana is None else max(0, min(mana, max_mana)),
        attack=attack,
        defense=defense,
        abilities=class_def.abilities,
        items=dict(items or {}),
    )
