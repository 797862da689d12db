"""Server-authoritative combat: participants, actions, outcomes fixed by a seed.

A :class:`Combat` is started with :class:`Combatant` values the lobby builds from
stored characters (:func:`make_combatant`: stats from class and level, current
health and mana, the consumables it carries). Each :meth:`Combat.act` is checked,
then resolved with a random stream derived from the combat's seed, its id and the
action's sequence number, so the same seed and the same actions give the same
outcome. Nothing changes when an action is refused.

Checks, in order (refusals are :class:`~protocol.errors.GameRuleError`):

* the combat is running and the actor is in it and has not fled (``NOT_IN_COMBAT``);
  a dead actor cannot act (``FORBIDDEN``);
* ``action_type`` is one of attack, spell, item, flee, defend (``BAD_REQUEST``);
* the actor's global cooldown has passed (``ON_COOLDOWN``, ``retry_at`` in details);
* spell: the ability exists and the actor's class knows it (``BAD_REQUEST``), its
  own cooldown has passed (``ON_COOLDOWN``), enough mana (``INSUFFICIENT_MANA``);
* item: the actor carries it (``ITEM_NOT_OWNED``) and it is a usable consumable
  (``BAD_REQUEST``);
* target: damage goes to a living opponent still in the fight, healing to a living
  ally (oneself included, the default); anything else is ``INVALID_TARGET``.
  Without ``target_id`` a damaging action picks the only opponent left, if exactly one.

Formulas: attack = ``attack`` x U(0.85, 1.15); damage spell = (``power`` +
``attack``/2) x U(0.85, 1.15); both may be critical (x1.5, ``rules.critical_chance``)
and are reduced by half the target's defence (at least 1). Damage items deal their
``damage`` x U(0.85, 1.15) ignoring defence. Heals restore ``power`` (or the item's
``heal``) x U(0.9, 1.1), capped at full health. Defending scales incoming damage
by ``1 - rules.defend_reduction`` until the defender acts again. Flight succeeds
with ``rules.flee_chance``. The combat ends when at most one side has anyone
alive and present: reason ``flight`` if the last action was a flight or a
withdrawal, else ``death``.

A lobby keeps its running combats in a :class:`CombatBook`: one fight per character
at a time (``CONFLICT`` for a character already fighting), an attacker names one to
``max_opponents`` (8) others (``INVALID_TARGET`` otherwise), combat ids are unique.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any

from lobby.game._common import derive_rng, refuse
from lobby.game.combatants import (
    ACTION_TYPES,
    ActionResult,
    Combatant,
    CombatEnd,
    CombatEvent,
    make_combatant,
    stats_for,
)
from lobby.game.world import AbilityDef, WorldDefinition
from protocol.errors import ErrorCode

MAX_OPPONENTS = 8

__all__ = [
    "ACTION_TYPES",
    "ActionResult",
    "Combat",
    "MAX_OPPONENTS",
    "CombatBook",
    "CombatEnd",
    "CombatEvent",
    "Combatant",
    "make_combatant",
    "stats_for",
]


class Combat:
    """One fight. Use :meth:`Combat.start`; then :meth:`act` and :meth:`withdraw`."""

    def __init__(
        self,
        world: WorldDefinition,
        *,
        combat_id: str,
        seed: int,
        combatants: list[Combatant],
        now: float,
        location_id: int | None,
    ) -> None:
        self.world = world
        self.combat_id = combat_id
        self.seed = seed
        self.started_at = now
        self.location_id = location_id
        self.seq = 0
        self.end: CombatEnd | None = None
        self._fighters: dict[int, Combatant] = {c.character_id: c for c in combatants}

    @classmethod
    def start(
        cls,
        world: WorldDefinition,
        *,
        combat_id: str,
        seed: int,
        participants: Iterable[Combatant],
        now: float,
        location_id: int | None = None,
    ) -> Combat:
        """Start a combat between at least two sides of living combatants.

        A ``location_id`` that is a safe location refuses the fight (``FORBIDDEN``).
        """
        combatants = list(participants)
        ids = [c.character_id for c in combatants]
        if len(set(ids)) != len(ids):
            refuse(ErrorCode.BAD_REQUEST, "a character appears twice in the combat")
        if len({c.side for c in combatants}) < 2:
            refuse(ErrorCode.INVALID_TARGET, "a combat needs at least two sides")
        dead = [c.character_id for c in combatants if not c.alive]
        if dead:
            refuse(ErrorCode.INVALID_TARGET, "dead characters cannot fight", dead=dead)
        if location_id is not None:
            location = world.location(location_id)
            if location is None:
                refuse(ErrorCode.NOT_FOUND, f"no location with id {location_id}")
            if location.safe:
                refuse(ErrorCode.FORBIDDEN, f"{location.name} is a safe place: no fighting")
        for c in combatants:
            c.fled = False
            c.defending = False
            c.next_action_at = now
        return cls(
            world,
            combat_id=combat_id,
            seed=seed,
            combatants=combatants,
            now=now,
            location_id=location_id,
        )

    # -- queries ---------------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        return self.end is not None

    def participant(self, character_id: int) -> Combatant | None:
        return self._fighters.get(character_id)

    def participants(self) -> list[Combatant]:
        return list(self._fighters.values())

    def snapshot(self) -> dict[str, Any]:
        """The COMBAT_STATE payload."""
        return {
            "combat_id": self.combat_id,
            "location_id": self.location_id,
            "started_at": self.started_at,
            "turn": self.seq,
            "ended": self.ended,
            "end": self.end.to_dict() if self.end else None,
            "participants": [c.to_dict() for c in self._fighters.values()],
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything needed to resume the combat elsewhere (JSON-ready)."""
        return {
            "combat_id": self.combat_id,
            "seed": self.seed,
            "location_id": self.location_id,
            "started_at": self.started_at,
            "seq": self.seq,
            "end": self.end.to_dict() if self.end else None,
            "fighters": [
                {
                    **{k: v for k, v in vars(c).items() if k not in ("items", "abilities")},
                    "abilities": list(c.abilities),
                    "items": [[i, t] for i, t in sorted(c.items.items())],
                }
                for c in self._fighters.values()
            ],
        }

    @classmethod
    def from_dict(cls, world: WorldDefinition, data: Mapping[str, Any]) -> Combat:
        """Rebuild a combat saved with :meth:`to_dict`; same seed, same future outcomes."""
        fighters = []
        for f in data["fighters"]:
            fields = dict(f)
            fields["abilities"] = tuple(fields["abilities"])
            fields["items"] = {int(i): int(t) for i, t in fields["items"]}
            fields["cooldowns"] = {str(k): float(v) for k, v in fields["cooldowns"].items()}
            fighters.append(Combatant(**fields))
        combat = cls(
            world,
            combat_id=str(data["combat_id"]),
            seed=int(data["seed"]),
            combatants=fighters,
            now=float(data["started_at"]),
            location_id=data["location_id"],
        )
        combat.seq = int(data["seq"])
        end = data.get("end")
        if end is not None:
            combat.end = CombatEnd(
                reason=end["reason"],
                winner_side=end["winner_side"],
                survivors=tuple(end["survivors"]),
                fled=tuple(end["fled"]),
                dead=tuple(end["dead"]),
            )
        return combat

    def restore(self, saved: Mapping[str, Any]) -> None:
        """Put this combat back, in place (others hold it), to a :meth:`to_dict` state."""
        vars(self).update(vars(Combat.from_dict(self.world, saved)))

    # -- actions ---------------------------------------------------------------------------

    def act(
        self,
        actor_id: int,
        action_type: str,
        *,
        now: float,
        target_id: int | None = None,
        ability_name: str | None = None,
        item_id: int | None = None,
    ) -> ActionResult:
        """Check and resolve one action (see the module docstring for the rules)."""
        actor = self._require_actor(actor_id)
        if action_type not in ACTION_TYPES:
            refuse(
                ErrorCode.BAD_REQUEST,
                f"unknown action {action_type!r}; one of {sorted(ACTION_TYPES)}",
            )
        if now < actor.next_action_at:
            refuse(
                ErrorCode.ON_COOLDOWN,
                "acting too fast",
                retry_at=actor.next_action_at,
            )
        rules = self.world.rules
        events: list[CombatEvent] = []
        consumed: int | None = None
        rng = derive_rng(self.seed, "combat", self.combat_id, self.seq)

        if action_type == "attack":
            target = self._enemy_target(actor, target_id)
            self._begin(actor, now)
            amount, crit = self._roll_damage(rng, float(actor.attack), target, mitigate=True)
            events += self._hit(actor, target, amount, crit=crit)
        elif action_type == "spell":
            ability = self._require_ability(actor, ability_name, now)
            if ability.kind == "damage":
                target = self._enemy_target(actor, target_id)
            else:
                target = self._ally_target(actor, target_id)
            self._begin(actor, now)
            actor.mana -= ability.mana_cost
            actor.cooldowns[ability.name] = now + ability.cooldown
            if ability.kind == "damage":
                power = ability.power + actor.attack / 2
                amount, crit = self._roll_damage(rng, power, target, mitigate=True)
                events += self._hit(actor, target, amount, crit=crit, ability=ability.name)
            else:
                amount = round(ability.power * rng.uniform(0.9, 1.1))
                events.append(self._heal(actor, target, amount, ability=ability.name))
        elif action_type == "item":
            used_id, template_id = self._require_item(actor, item_id)
            item = self.world.item(template_id)
            if (
                item is None
                or item.kind != "consumable"
                or not (item.heal or item.mana or item.damage)
            ):
                refuse(ErrorCode.BAD_REQUEST, "that item cannot be used in combat", item_id=item_id)
            if item.damage:
                target = self._enemy_target(actor, target_id)
            else:
                target = self._ally_target(actor, target_id)
            self._begin(actor, now)
            del actor.items[used_id]
            consumed = used_id
            if item.damage:
                amount, _ = self._roll_damage(rng, float(item.damage), target, mitigate=False)
                events += self._hit(actor, target, amount, crit=False, item_id=item_id)
            if item.heal:
                amount = round(item.heal * rng.uniform(0.9, 1.1))
                events.append(self._heal(actor, target, amount, item_id=item_id))
            if item.mana:
                gained = min(item.mana, target.max_mana - target.mana)
                target.mana += gained
                events.append(
                    CombatEvent(
                        "mana", actor.character_id, target.character_id, gained, None, item_id
                    )
                )
        elif action_type == "flee":
            self._begin(actor, now)
            if rng.random() < rules.flee_chance:
                actor.fled = True
                events.append(CombatEvent("flee", actor.character_id))
            else:
                events.append(CombatEvent("flee_failed", actor.character_id))
        else:  # defend
            self._begin(actor, now)
            actor.defending = True
            events.append(CombatEvent("defend", actor.character_id))

        self.seq += 1
        self._check_end(flight=action_type == "flee")
        return ActionResult(
            action_type, actor_id, tuple(events), consumed, self.end, self.snapshot()
        )

    def withdraw(self, character_id: int, *, now: float) -> ActionResult:
        """Take a participant out without a roll (disconnect): counts as a flight.

        The dead stay dead and in the record: withdrawing them changes nothing.
        """
        if self.end is not None:
            refuse(ErrorCode.NOT_IN_COMBAT, "this combat has ended", combat_id=self.combat_id)
        fighter = self._fighters.get(character_id)
        if fighter is None or fighter.fled:
            refuse(ErrorCode.NOT_IN_COMBAT, "not in this combat", combat_id=self.combat_id)
        if not fighter.alive:
            return ActionResult("flee", character_id, (), None, None, self.snapshot())
        fighter.fled = True
        fighter.defending = False
        self.seq += 1
        self._check_end(flight=True)
        events = (CombatEvent("flee", character_id),)
        return ActionResult("flee", character_id, events, None, self.end, self.snapshot())

    # -- helpers ---------------------------------------------------------------------------

    def _require_actor(self, actor_id: int) -> Combatant:
        if self.end is not None:
            refuse(ErrorCode.NOT_IN_COMBAT, "this combat has ended", combat_id=self.combat_id)
        actor = self._fighters.get(actor_id)
        if actor is None or actor.fled:
            refuse(ErrorCode.NOT_IN_COMBAT, "you are not in this combat", combat_id=self.combat_id)
        if not actor.alive:
            refuse(ErrorCode.FORBIDDEN, "the dead cannot act", combat_id=self.combat_id)
        return actor

    def _require_ability(self, actor: Combatant, name: str | None, now: float) -> AbilityDef:
        if not name:
            refuse(ErrorCode.BAD_REQUEST, "a spell needs an ability_name")
        ability = self.world.ability(name)
        if ability is None or name not in actor.abilities:
            refuse(
                ErrorCode.BAD_REQUEST,
                f"{actor.class_name} does not know {name!r}",
                ability_name=name,
            )
        ready_at = actor.cooldowns.get(name, 0.0)
        if now < ready_at:
            refuse(ErrorCode.ON_COOLDOWN, f"{name} is on cooldown", retry_at=ready_at)
        if actor.mana < ability.mana_cost:
            refuse(
                ErrorCode.INSUFFICIENT_MANA,
                f"{name} needs {ability.mana_cost} mana, you have {actor.mana}",
                needed=ability.mana_cost,
                mana=actor.mana,
            )
        return ability

    def _require_item(self, actor: Combatant, item_id: int | None) -> tuple[int, int]:
        if item_id is None:
            refuse(ErrorCode.BAD_REQUEST, "an item action needs an item_id")
        template_id = actor.items.get(item_id)
        if template_id is None:
            refuse(ErrorCode.ITEM_NOT_OWNED, "you do not carry that item", item_id=item_id)
        return item_id, template_id

    def _enemy_target(self, actor: Combatant, target_id: int | None) -> Combatant:
        enemies = [c for c in self._fighters.values() if c.side != actor.side and c.active]
        if target_id is None:
            if len(enemies) == 1:
                return enemies[0]
            refuse(ErrorCode.INVALID_TARGET, "choose a target")
        target = self._fighters.get(target_id)
        if target is None or target not in enemies:
            refuse(
                ErrorCode.INVALID_TARGET,
                "the target must be a living opponent in this combat",
                target_id=target_id,
            )
        return target

    def _ally_target(self, actor: Combatant, target_id: int | None) -> Combatant:
        if target_id is None:
            return actor
        target = self._fighters.get(target_id)
        if target is None or target.side != actor.side or not target.active:
            refuse(
                ErrorCode.INVALID_TARGET,
                "healing must target a living ally in this combat",
                target_id=target_id,
            )
        return target

    def _begin(self, actor: Combatant, now: float) -> None:
        actor.defending = False
        actor.next_action_at = now + self.world.rules.global_cooldown_seconds

    def _roll_damage(
        self, rng: random.Random, power: float, target: Combatant, *, mitigate: bool
    ) -> tuple[int, bool]:
        raw = power * rng.uniform(0.85, 1.15)
        crit = mitigate and rng.random() < self.world.rules.critical_chance
        if crit:
            raw *= 1.5
        if mitigate:
            raw = max(1.0, raw - target.defense / 2)
        if target.defending:
            raw *= 1.0 - self.world.rules.defend_reduction
        return max(0, round(raw)), crit

    def _hit(
        self,
        actor: Combatant,
        target: Combatant,
        amount: int,
        *,
        crit: bool,
        ability: str | None = None,
        item_id: int | None = None,
    ) -> list[CombatEvent]:
        dealt = min(amount, target.health)
        target.health -= dealt
        events = [
            CombatEvent(
                "damage",
                actor.character_id,
                target.character_id,
                dealt,
                ability,
                item_id,
                crit,
                target.health,
            )
        ]
        if not target.alive:
            target.defending = False
            events.append(CombatEvent("death", actor.character_id, target.character_id, 0))
        return events

    def _heal(
        self,
        actor: Combatant,
        target: Combatant,
        amount: int,
        *,
        ability: str | None = None,
        item_id: int | None = None,
    ) -> CombatEvent:
        healed = max(0, min(amount, target.max_health - target.health))
        target.health += healed
        return CombatEvent(
            "heal",
            actor.character_id,
            target.character_id,
            healed,
            ability,
            item_id,
            False,
            target.health,
        )

    def _check_end(self, *, flight: bool) -> None:
        sides_left = {c.side for c in self._fighters.values() if c.active}
        if len(sides_left) > 1:
            return
        winner = next(iter(sides_left)) if sides_left else None
        fighters = self._fighters.values()
        self.end = CombatEnd(
            reason="flight" if flight else "death",
            winner_side=winner,
            survivors=tuple(c.character_id for c in fighters if c.active),
            fled=tuple(c.character_id for c in fighters if c.fled),
            dead=tuple(c.character_id for c in fighters if not c.alive),
        )


class CombatBook:
    """The running combats of one lobby, each character in at most one of them.

    The lobby names the opponents (:meth:`opponents`), checks the fighters are free
    (:meth:`check_free`) before it reads them from storage, starts the
    :class:`Combat` and :meth:`add` s it, which checks again and registers it in one
    step, so two starts racing for the same character cannot both win.
    :meth:`finish` forgets an ended combat.
    """

    def __init__(self, *, max_opponents: int = MAX_OPPONENTS) -> None:
        self.max_opponents = max_opponents
        self._combats: dict[str, Combat] = {}
        self._of: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self._combats)

    def get(self, combat_id: str) -> Combat | None:
        return self._combats.get(combat_id)

    def require(self, combat_id: str) -> Combat:
        """The running combat ``combat_id`` (``NOT_IN_COMBAT`` when there is none)."""
        combat = self._combats.get(combat_id)
        if combat is None:
            refuse(ErrorCode.NOT_IN_COMBAT, "no such combat", combat_id=combat_id)
        return combat

    def combat_of(self, character_id: int) -> Combat | None:
        combat_id = self._of.get(character_id)
        return self._combats.get(combat_id) if combat_id is not None else None

    def in_combat(self, character_id: int) -> bool:
        return character_id in self._of

    def opponents(self, attacker_id: int, named: Iterable[int]) -> list[int]:
        """The distinct characters ``attacker_id`` attacks, in the order named (itself left out)."""
        targets = list(dict.fromkeys(cid for cid in named if cid != attacker_id))
        if not targets:
            refuse(ErrorCode.INVALID_TARGET, "name at least one opponent")
        if len(targets) > self.max_opponents:
            refuse(ErrorCode.INVALID_TARGET, f"at most {self.max_opponents} opponents")
        return targets

    def check_free(self, character_ids: Iterable[int]) -> None:
        """Refuse (``CONFLICT``) if any of ``character_ids`` is already fighting."""
        for cid in character_ids:
            if cid in self._of:
                refuse(ErrorCode.CONFLICT, f"character {cid} is already fighting", character_id=cid)

    def add(self, combat: Combat) -> Combat:
        """Register a combat just started with :meth:`Combat.start`; it is then running here.

        Refused (``CONFLICT``) if one of its fighters is already fighting or its id is
        taken; nothing is registered then.
        """
        fighters = combat.participants()
        self.check_free(f.character_id for f in fighters)
        if combat.combat_id in self._combats:
            refuse(ErrorCode.CONFLICT, f"combat id {combat.combat_id!r} is taken")
        self._combats[combat.combat_id] = combat
        for f in fighters:
            self._of[f.character_id] = combat.combat_id
        return combat

    def finish(self, combat: Combat) -> bool:
        """Forget ``combat`` and free its fighters; True if it was running here."""
        if self._combats.get(combat.combat_id) is not combat:
            return False
        del self._combats[combat.combat_id]
        for f in combat.participants():
            if self._of.get(f.character_id) == combat.combat_id:
                del self._of[f.character_id]
        return True
