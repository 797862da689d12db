"""Pure game rules of the lobby: world definition, shards, movement, parties, combat, trade.

No I/O and no clock reads: callers pass ``now`` (seconds) and seeds, so the rules are
fast to test and the lobby wires them to storage and the WebSocket hub.
"""

from __future__ import annotations

from lobby.game.world import (
    AbilityDef,
    ClassDef,
    FactionDef,
    ItemDef,
    LocationDef,
    RulesDef,
    ShardDef,
    WorldDefinition,
    load_world,
    parse_world,
)

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
