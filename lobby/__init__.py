"""The master lobby: accounts, sessions, characters, the WebSocket hub and the world.

``MasterServer`` runs it (``python -m lobby`` from a shell); ``LobbySettings``
holds every setting (``SHARDS_*`` environment variables); services plug in
through ``LobbyService`` and ``LobbyContext``.
"""

from __future__ import annotations

from lobby.config import Clock, LobbySettings
from lobby.context import LobbyContext
from lobby.server import LobbyService, MasterServer

__all__ = ["Clock", "LobbyContext", "LobbyService", "LobbySettings", "MasterServer"]
