"""Crystal Shard capture, reality shifts and the Aetherfall: pure rules over explicit state.

Capture rules (each refusal is a :class:`~protocol.errors.GameRuleError`):

* the shard must exist (``NOT_FOUND``) and the faction must be one of the world's
  (``VALIDATION_ERROR``);
* the character must stand at the shard's location (``NOT_AT_LOCATION``);
* a shard already held by the capturing faction is refused (``ALREADY_OWNED``);
* after a capture the shard is locked for ``rules.capture_cooldown_seconds``
  (``SHARD_COOLDOWN``, with ``retry_at`` in the details): the defenders get a
  window to answer before it changes hands again.

Reality rule: a capture that lifts the capturing faction from below
``rules.reality_shift_threshold`` shards to the threshold shifts the reality to
the next one in ``world.realities`` (wrapping round). Only the crossing shifts:
holding the shards keeps the reality, losing one and taking it back shifts again.
Ownership is kept across a shift.

Aetherfall: one is due ``interval`` seconds after the last (or after ``now`` if
there never was one). Missed Aetherfalls are not replayed: after downtime at most
one fires, and the next is counted from when it fired. Its effect is fixed by a
seed: an epicentre among the unsafe locations, the area around it struck for
``rules.aetherfall_power`` damage, and the shards at the epicentre torn loose
(left without an owner, their cooldown cleared). It lasts
``rules.aetherfall_duration_seconds`` (``ends_at``), for display.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lobby.game._common import derive_rng, refuse
from lobby.game.world import ShardDef, WorldDefinition
from protocol.errors import ErrorCode

__all__ = [
    "AetherfallEvent",
    "CaptureOutcome",
    "RealityShift",
    "ShardBoard",
    "ShardState",
    "aetherfall_due",
    "aetherfall_event",
    "next_aetherfall",
    "next_reality",
]


@dataclass(frozen=True, slots=True)
class ShardState:
    """Who holds a shard and since when; ``owner`` None means unclaimed."""

    shard_id: int
    owner: str | None = None
    captured_at: float | None = None
    captured_by: int | None = None
    captured_by_name: str | None = None

    def cooldown_until(self, cooldown: float) -> float | None:
        return None if self.captured_at is None else self.captured_at + cooldown


@dataclass(frozen=True, slots=True)
class RealityShift:
    """The reality changed because ``faction`` came to hold ``shards_held`` shards."""

    from_reality: str
    to_reality: str
    faction: str
    shards_held: int


@dataclass(frozen=True, slots=True)
class CaptureOutcome:
    """What a successful capture changed: persist ``state`` (and ``reality_shift``)."""

    shard: ShardDef
    previous_owner: str | None
    state: ShardState
    reality_shift: RealityShift | None


@dataclass(frozen=True, slots=True)
class AetherfallEvent:
    """A fixed-by-seed Aetherfall: where it strikes, how hard, which shards it frees."""

    seed: int
    at: float
    ends_at: float
    epicentre_id: int
    epicentre_name: str
    struck_location_ids: tuple[int, ...]
    damage: int
    released_shard_ids: tuple[int, ...]

    def damage_at(self, location_id: int) -> int:
        """Damage a character standing at ``location_id`` takes (0 outside the area)."""
        return self.damage if location_id in self.struck_location_ids else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "at": self.at,
            "ends_at": self.ends_at,
            "epicentre_id": self.epicentre_id,
            "epicentre_name": self.epicentre_name,
            "struck_location_ids": list(self.struck_location_ids),
            "damage": self.damage,
            "released_shard_ids": list(self.released_shard_ids),
        }


def next_reality(world: WorldDefinition, current: str) -> str:
    """The reality after ``current`` (wrapping); an unknown ``current`` restarts at the first."""
    try:
        index = world.realities.index(current)
    except ValueError:
        return world.realities[0]
    return world.realities[(index + 1) % len(world.realities)]


class ShardBoard:
    """Ownership of every shard plus the current reality; mutated only by its methods.

    Build it from persisted rows (``states``, ``reality``) or empty for a new world.
    States for shards the world no longer has are dropped; missing ones start unclaimed.
    """

    def __init__(
        self,
        world: WorldDefinition,
        *,
        reality: str | None = None,
        states: Iterable[ShardState] = (),
    ) -> None:
        self.world = world
        self.reality = reality if reality in world.realities else world.initial_reality
        given = {s.shard_id: s for s in states}
        self._states: dict[int, ShardState] = {
            shard.id: given.get(shard.id, ShardState(shard.id)) for shard in world.shards
        }

    def state(self, shard_id: int) -> ShardState:
        """The shard's state; ``NOT_FOUND`` for an unknown id."""
        self._shard(shard_id)
        return self._states[shard_id]

    def states(self) -> tuple[ShardState, ...]:
        return tuple(self._states[s.id] for s in self.world.shards)

    def counts(self) -> dict[str, int]:
        """Shards held per faction (every faction listed, zero included)."""
        held = Counter(s.owner for s in self._states.values() if s.owner is not None)
        return {f.name: held.get(f.name, 0) for f in self.world.factions}

    def check_capture(
        self, shard_id: int, *, faction: str, location_id: int, now: float
    ) -> ShardDef:
        """Raise the refusal a capture would meet, or return the shard."""
        shard = self._shard(shard_id)
        if faction not in self.world.faction_names():
            refuse(ErrorCode.VALIDATION_ERROR, f"unknown faction {faction!r}", faction=faction)
        if location_id != shard.location_id:
            refuse(
                ErrorCode.NOT_AT_LOCATION,
                f"{shard.name} stands at location {shard.location_id}, not {location_id}",
                shard_id=shard_id,
                shard_location_id=shard.location_id,
                location_id=location_id,
            )
        state = self._states[shard_id]
        if state.owner == faction:
            refuse(
                ErrorCode.ALREADY_OWNED,
                f"{shard.name} is already held by {faction}",
                shard_id=shard_id,
                faction=faction,
            )
        until = state.cooldown_until(self.world.rules.capture_cooldown_seconds)
        if until is not None and now < until:
            refuse(
                ErrorCode.SHARD_COOLDOWN,
                f"{shard.name} was captured recently; it can be taken again in {until - now:.0f} s",
                shard_id=shard_id,
                retry_at=until,
            )
        return shard

    def capture(
        self,
        shard_id: int,
        *,
        character_id: int,
        faction: str,
        location_id: int,
        now: float,
        character_name: str | None = None,
    ) -> CaptureOutcome:
        """Capture for ``faction`` (refusals as :meth:`check_capture`); may shift the reality."""
        shard = self.check_capture(shard_id, faction=faction, location_id=location_id, now=now)
        before = self.counts()[faction]
        previous = self._states[shard_id].owner
        state = ShardState(
            shard_id=shard_id,
            owner=faction,
            captured_at=now,
            captured_by=character_id,
            captured_by_name=character_name,
        )
        self._states[shard_id] = state
        after = before + 1
        shift: RealityShift | None = None
        threshold = self.world.rules.reality_shift_threshold
        if before < threshold <= after:
            target = next_reality(self.world, self.reality)
            shift = RealityShift(self.reality, target, faction, after)
            self.reality = target
        return CaptureOutcome(shard, previous, state, shift)

    def apply_aetherfall(self, event: AetherfallEvent) -> tuple[ShardState, ...]:
        """Tear the event's shards loose; return their new (unclaimed) states."""
        released = []
        for shard_id in event.released_shard_ids:
            if shard_id in self._states:
                self._states[shard_id] = ShardState(shard_id)
                released.append(self._states[shard_id])
        return tuple(released)

    def snapshot(self, now: float | None = None) -> list[dict[str, Any]]:
        """Every shard as a dict for ``SHARD_STATUS`` / ``WORLD_STATE``.

        With ``now``, ``capturable_at`` is None once the cooldown has passed.
        """
        cooldown = self.world.rules.capture_cooldown_seconds
        out = []
        for shard in self.world.shards:
            st = self._states[shard.id]
            location = self.world.location(shard.location_id)
            until = st.cooldown_until(cooldown)
            if until is not None and now is not None and now >= until:
                until = None
            out.append(
                {
                    "shard_id": shard.id,
                    "name": shard.name,
                    "location_id": shard.location_id,
                    "location_name": location.name if location else None,
                    "owner": st.owner,
                    "captured_at": st.captured_at,
                    "captured_by": st.captured_by,
                    "captured_by_name": st.captured_by_name,
                    "capturable_at": until,
                }
            )
        return out

    def world_state(self, now: float | None = None) -> dict[str, Any]:
        """The world part of ``WORLD_STATE`` / ``GET /api/world/state``."""
        return {
            "current_reality": self.reality,
            "realities": list(self.world.realities),
            "faction_shards": self.counts(),
            "shards": self.snapshot(now),
        }

    def _shard(self, shard_id: int) -> ShardDef:
        shard = self.world.shard(shard_id)
        if shard is None:
            refuse(ErrorCode.NOT_FOUND, f"no shard with id {shard_id}", shard_id=shard_id)
        return shard


def next_aetherfall(last: float | None, now: float, interval: float) -> float:
    """When the next Aetherfall is due (may be ``<= now``: then it is due now).

    ``last`` None means there never was one: the first comes ``interval`` after ``now``.
    A ``last`` in the future (a clock that went back) counts as ``now``.
    """
    if interval <= 0:
        raise ValueError("interval must be positive")
    if last is None:
        return now + interval
    return min(last, now) + interval


def aetherfall_due(last: float | None, now: float, interval: float) -> bool:
    """True if an Aetherfall should fire at ``now``; after firing, pass ``now`` as ``last``."""
    return last is not None and next_aetherfall(last, now, interval) <= now


def aetherfall_event(world: WorldDefinition, *, seed: int, now: float) -> AetherfallEvent:
    """The Aetherfall that ``seed`` decides: same seed and world, same event."""
    rng = derive_rng(seed, "aetherfall")
    candidates = [loc for loc in world.locations if not loc.safe] or list(world.locations)
    epicentre = rng.choice(sorted(candidates, key=lambda loc: loc.id))
    struck = [epicentre.id]
    for n in sorted(epicentre.neighbours):
        neighbour = world.location(n)
        if neighbour is not None and not neighbour.safe:
            struck.append(n)
    released = tuple(s.id for s in world.shards_at(epicentre.id))
    return AetherfallEvent(
        seed=seed,
        at=now,
        ends_at=now + world.rules.aetherfall_duration_seconds,
        epicentre_id=epicentre.id,
        epicentre_name=epicentre.name,
        struck_location_ids=tuple(struck),
        damage=world.rules.aetherfall_power,
        released_shard_ids=released,
    )
