"""Pure game rules of the lobby: world definition, shards, travel (MOVE), parties, combat, trade.

No I/O and no clock reads: callers pass ``now`` (seconds) and seeds, so the rules are
fast to test and the lobby wires them to storage and the WebSocket hub. Refusals are
:class:`protocol.errors.GameRuleError` whose ``code`` is the ``ERROR`` message's code.
"""

from __future__ import annotations

from lobby.game.combat import (
    ACTION_TYPES,
    ActionResult,
    Combat,
    Combatant,
    CombatBook,
    CombatEnd,
    CombatEvent,
    make_combatant,
    stats_for,
)
from lobby.game.party import Party, PartyBook, PartyChange, PartyInvite, PartyMember
from lobby.game.shards import (
    AetherfallEvent,
    CaptureOutcome,
    RealityShift,
    ShardBoard,
    ShardState,
    aetherfall_due,
    aetherfall_event,
    next_aetherfall,
    next_reality,
)
from lobby.game.trade import (
    Offer,
    Trade,
    TradeBook,
    TradeExchange,
    TradeStatus,
    Transfer,
    unique_item_ids,
)
from lobby.game.travel import path_between, validate_move
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
    "ACTION_TYPES",
    "AbilityDef",
    "ActionResult",
    "AetherfallEvent",
    "CaptureOutcome",
    "ClassDef",
    "Combat",
    "CombatBook",
    "CombatEnd",
    "CombatEvent",
    "Combatant",
    "FactionDef",
    "ItemDef",
    "LocationDef",
    "Offer",
    "Party",
    "PartyBook",
    "PartyChange",
    "PartyInvite",
    "PartyMember",
    "RealityShift",
    "RulesDef",
    "ShardBoard",
    "ShardDef",
    "ShardState",
    "Trade",
    "TradeBook",
    "TradeExchange",
    "TradeStatus",
    "Transfer",
    "WorldDefinition",
    "aetherfall_due",
    "aetherfall_event",
    "load_world",
    "make_combatant",
    "next_aetherfall",
    "next_reality",
    "parse_world",
    "path_between",
    "stats_for",
    "unique_item_ids",
    "validate_move",
]
