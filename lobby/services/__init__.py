"""The lobby's game services: world, location (MOVE), parties, combat, trade, directory + relay.

:func:`game_services` builds one of each; :class:`~lobby.server.MasterServer`
adds them after the services passed to it (:func:`with_game_services`), so an
explicitly passed service with the same ``name`` replaces the default one, and a
message type an explicit service already handles is left to it.

The game tables (:mod:`lobby.storage.game_schema`) are created by the
storage's baseline Alembic revision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lobby.storage.game_schema as _game_schema  # noqa: F401 - its tables on the metadata
from lobby.services.combat import CombatService
from lobby.services.directory import DirectoryService
from lobby.services.inventory import InventoryService
from lobby.services.location import LocationService
from lobby.services.party import PartyService
from lobby.services.trade import TradeService
from lobby.services.world import WorldService

__all__ = [
    "CombatService",
    "DirectoryService",
    "InventoryService",
    "LocationService",
    "PartyService",
    "TradeService",
    "WorldService",
    "game_services",
    "with_game_services",
]


def game_services() -> list[Any]:
    """One instance of every game service, in setup order."""
    return [
        DirectoryService(),
        WorldService(),
        LocationService(),
        PartyService(),
        InventoryService(),
        TradeService(),
        CombatService(),
    ]


def with_game_services(services: Sequence[Any]) -> list[Any]:
    """``services`` followed by the game services whose names they do not already use."""
    taken = {getattr(s, "name", None) for s in services}
    return [*services, *(s for s in game_services() if s.name not in taken)]
