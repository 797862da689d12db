"""The world definition: factions, classes, abilities, items, the map, the Crystal Shards, rules.

The world ships as data (``lobby/data/world.json``) and an operator may point the
lobby at a file of their own. :func:`load_world` reads and checks a file and
returns an immutable :class:`WorldDefinition`; every defect becomes a
:class:`~protocol.errors.ConfigError` whose message names the file and the fault.

Checks made on load (a world that passes them is safe for every rule module):

* ids and names unique: factions, classes, abilities, items, locations, shards,
  realities;
* every neighbour id names an existing location, no location neighbours itself;
* edges are **symmetric: an asymmetric edge is rejected**, not repaired. A
  one-way edge in a hand-edited file is almost always a typo, and silently adding
  the missing half would hide it; the error names both locations;
* every location is reachable from ``start_location_id``;
* every shard stands at an existing location, classes name existing abilities,
  the starting inventory names existing items;
* ``rules.reality_shift_threshold`` is between 1 and the number of shards.

Lookups never raise ``KeyError``: :meth:`WorldDefinition.location`,
:meth:`~WorldDefinition.shard`, :meth:`~WorldDefinition.item`,
:meth:`~WorldDefinition.ability` and :meth:`~WorldDefinition.class_def` return
``None`` for an unknown key, so the caller chooses the error code that fits
(``INVALID_MOVE`` for a move, ``NOT_FOUND`` for a REST path, ...).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from protocol.errors import ConfigError

__all__ = [
    "AbilityDef",
    "ClassDef",
    "FactionDef",
    "ItemDef",
    "LocationDef",
    "RulesDef",
    "ShardDef",
    "WorldDefinition",
    "load_world",
    "parse_world",
]

_Name = Field(min_length=1, max_length=64)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class FactionDef(_Frozen):
    """A faction a character belongs to for life."""

    name: str = _Name
    description: str = ""


class AbilityDef(_Frozen):
    """A spell or skill: ``damage`` hits an enemy, ``heal`` restores an ally (or oneself)."""

    name: str = _Name
    kind: Literal["damage", "heal"]
    power: int = Field(ge=0, le=100_000)
    cooldown: float = Field(ge=0.0, le=86_400.0, description="seconds")
    mana_cost: int = Field(ge=0, le=100_000)
    description: str = ""


class ClassDef(_Frozen):
    """A character class: stats at level 1, growth per level above 1, abilities known."""

    name: str = _Name
    description: str = ""
    base_health: int = Field(ge=1, le=1_000_000)
    base_mana: int = Field(ge=0, le=1_000_000)
    base_attack: int = Field(ge=0, le=100_000)
    base_defense: int = Field(ge=0, le=100_000)
    health_per_level: int = Field(default=10, ge=0, le=100_000)
    mana_per_level: int = Field(default=5, ge=0, le=100_000)
    attack_per_level: int = Field(default=2, ge=0, le=10_000)
    defense_per_level: int = Field(default=1, ge=0, le=10_000)
    abilities: tuple[str, ...] = ()


class ItemDef(_Frozen):
    """An item template. Consumables used in combat heal, restore mana or deal damage."""

    id: int = Field(ge=1, le=2**31 - 1)
    name: str = _Name
    kind: Literal["consumable", "weapon", "armor", "trinket", "material"]
    heal: int = Field(default=0, ge=0, le=100_000)
    mana: int = Field(default=0, ge=0, le=100_000)
    damage: int = Field(default=0, ge=0, le=100_000)
    value: int = Field(default=0, ge=0, le=10_000_000, description="price in gold")
    description: str = ""


class LocationDef(_Frozen):
    """A place on the world map; ``safe`` places forbid starting combat."""

    id: int = Field(ge=1, le=2**31 - 1)
    name: str = _Name
    description: str = ""
    neighbours: tuple[int, ...] = ()
    safe: bool = False


class ShardDef(_Frozen):
    """A Crystal Shard and the location it stands at."""

    id: int = Field(ge=1, le=2**31 - 1)
    name: str = _Name
    location_id: int
    description: str = ""


class RulesDef(_Frozen):
    """Tunable rules. Durations are seconds."""

    capture_cooldown_seconds: float = Field(default=300.0, ge=0.0)
    reality_shift_threshold: int = Field(default=4, ge=1)
    aetherfall_interval_seconds: float = Field(default=3600.0, gt=0.0)
    aetherfall_power: int = Field(default=25, ge=0, le=100_000)
    aetherfall_duration_seconds: float = Field(default=300.0, ge=0.0)
    party_size_limit: int = Field(default=5, ge=2, le=100)
    invite_ttl_seconds: float = Field(default=60.0, gt=0.0)
    trade_request_ttl_seconds: float = Field(default=60.0, gt=0.0)
    character_limit_per_account: int = Field(default=5, ge=1, le=100)
    starting_gold: int = Field(default=100, ge=0, le=10_000_000)
    starting_inventory: tuple[int, ...] = ()
    max_level: int = Field(default=50, ge=1, le=1000)
    flee_chance: float = Field(default=0.5, ge=0.0, le=1.0)
    defend_reduction: float = Field(default=0.5, ge=0.0, le=1.0)
    global_cooldown_seconds: float = Field(default=1.0, ge=0.0, le=60.0)
    critical_chance: float = Field(default=0.1, ge=0.0, le=1.0)


class WorldDefinition(_Frozen):
    """The checked, immutable world. Build it with :func:`load_world` or :func:`parse_world`."""

    name: str = "Shards of Eternity"
    factions: tuple[FactionDef, ...] = Field(min_length=1)
    classes: tuple[ClassDef, ...] = Field(min_length=1)
    abilities: tuple[AbilityDef, ...] = ()
    items: tuple[ItemDef, ...] = ()
    locations: tuple[LocationDef, ...] = Field(min_length=1)
    shards: tuple[ShardDef, ...] = Field(min_length=1)
    realities: tuple[str, ...] = Field(min_length=1)
    start_location_id: int
    rules: RulesDef = RulesDef()

    _locations: dict[int, LocationDef] = PrivateAttr(default_factory=dict)
    _shards: dict[int, ShardDef] = PrivateAttr(default_factory=dict)
    _items: dict[int, ItemDef] = PrivateAttr(default_factory=dict)
    _abilities: dict[str, AbilityDef] = PrivateAttr(default_factory=dict)
    _classes: dict[str, ClassDef] = PrivateAttr(default_factory=dict)
    _edges: frozenset[tuple[int, int]] = PrivateAttr(default=frozenset())

    @model_validator(mode="after")
    def _check(self) -> WorldDefinition:
        _unique("faction name", [f.name for f in self.factions])
        _unique("class name", [c.name for c in self.classes])
        _unique("ability name", [a.name for a in self.abilities])
        _unique("item id", [i.id for i in self.items])
        _unique("location id", [loc.id for loc in self.locations])
        _unique("shard id", [s.id for s in self.shards])
        _unique("shard name", [s.name for s in self.shards])
        _unique("reality", list(self.realities))
        if any(not r.strip() for r in self.realities):
            raise ValueError("a reality name is empty")

        locations = {loc.id: loc for loc in self.locations}
        edges: set[tuple[int, int]] = set()
        for loc in self.locations:
            _unique(f"neighbour of location {loc.id}", list(loc.neighbours))
            for n in loc.neighbours:
                if n == loc.id:
                    raise ValueError(f"location {loc.id} ({loc.name!r}) lists itself as neighbour")
                if n not in locations:
                    raise ValueError(
                        f"location {loc.id} ({loc.name!r}) has unknown neighbour id {n}"
                    )
                edges.add((loc.id, n))
        for a, b in sorted(edges):
            if (b, a) not in edges:
                raise ValueError(
                    f"asymmetric edge: location {a} lists {b} as neighbour but {b} "
                    f"({locations[b].name!r}) does not list {a}; edges must be listed both ways"
                )
        if self.start_location_id not in locations:
            raise ValueError(f"start_location_id {self.start_location_id} is not a location")
        unreachable = set(locations) - _reachable(self.start_location_id, locations)
        if unreachable:
            raise ValueError(
                f"locations {sorted(unreachable)} are unreachable from start location "
                f"{self.start_location_id}"
            )

        for shard in self.shards:
            if shard.location_id not in locations:
                raise ValueError(
                    f"shard {shard.id} ({shard.name!r}) stands at missing location "
                    f"{shard.location_id}"
                )
        abilities = {a.name: a for a in self.abilities}
        for cls in self.classes:
            _unique(f"ability of class {cls.name!r}", list(cls.abilities))
            for ability in cls.abilities:
                if ability not in abilities:
                    raise ValueError(f"class {cls.name!r} names unknown ability {ability!r}")
        items = {i.id: i for i in self.items}
        for item_id in self.rules.starting_inventory:
            if item_id not in items:
                raise ValueError(f"rules.starting_inventory names unknown item id {item_id}")
        if self.rules.reality_shift_threshold > len(self.shards):
            raise ValueError(
                f"rules.reality_shift_threshold {self.rules.reality_shift_threshold} exceeds "
                f"the number of shards ({len(self.shards)})"
            )

        self._locations = locations
        self._shards = {s.id: s for s in self.shards}
        self._items = items
        self._abilities = abilities
        self._classes = {c.name: c for c in self.classes}
        self._edges = frozenset(edges)
        return self

    # -- lookups (None for an unknown key, never KeyError) --------------------------------

    def faction_names(self) -> frozenset[str]:
        return frozenset(f.name for f in self.factions)

    def class_names(self) -> frozenset[str]:
        return frozenset(c.name for c in self.classes)

    def location(self, location_id: int) -> LocationDef | None:
        return self._locations.get(location_id)

    def shard(self, shard_id: int) -> ShardDef | None:
        return self._shards.get(shard_id)

    def item(self, item_id: int) -> ItemDef | None:
        return self._items.get(item_id)

    def ability(self, name: str) -> AbilityDef | None:
        return self._abilities.get(name)

    def class_def(self, name: str) -> ClassDef | None:
        return self._classes.get(name)

    def are_neighbours(self, a: int, b: int) -> bool:
        """True if ``a`` and ``b`` are distinct locations joined by an edge."""
        return (a, b) in self._edges

    def shards_at(self, location_id: int) -> tuple[ShardDef, ...]:
        return tuple(s for s in self.shards if s.location_id == location_id)

    @property
    def initial_reality(self) -> str:
        return self.realities[0]


def parse_world(data: Mapping[str, Any], *, source: str = "<world>") -> WorldDefinition:
    """Validate an already decoded world document; raise ConfigError naming ``source``."""
    try:
        return WorldDefinition.model_validate(dict(data))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        raise ConfigError(
            f"world file {source} is invalid: {problems}", details={"source": source}
        ) from None


def load_world(path: str | Path | None = None) -> WorldDefinition:
    """Load and check a world file; ``None`` loads the shipped ``lobby/data/world.json``."""
    if path is None:
        source = "lobby/data/world.json (shipped)"
        try:
            text = resources.files("lobby").joinpath("data/world.json").read_text("utf-8")
        except OSError as exc:
            raise ConfigError(f"shipped world file missing: {exc}") from None
    else:
        source = str(path)
        try:
            text = Path(path).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read world file {source}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"world file {source} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"world file {source} must hold a JSON object at the top level")
    return parse_world(data, source=source)


def _unique(what: str, values: list[Any]) -> None:
    seen: set[Any] = set()
    for v in values:
        if v in seen:
            raise ValueError(f"duplicate {what}: {v!r}")
        seen.add(v)


def _reachable(start: int, locations: Mapping[int, LocationDef]) -> set[int]:
    seen = {start}
    todo = deque([start])
    while todo:
        for n in locations[todo.popleft()].neighbours:
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return seen
