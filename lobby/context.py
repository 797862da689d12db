"""``LobbyContext``: what a lobby service gets to work with.

One instance per running :class:`~lobby.server.MasterServer`, handed to every
service's ``setup(ctx)`` and reachable from a REST handler as ``req.ctx`` and
from a WS handler as ``conn.ctx``:

* ``settings`` (:class:`~lobby.config.LobbySettings`), ``clock`` (wall seconds),
  ``world`` (:class:`~lobby.game.world.WorldDefinition`);
* ``db`` (:class:`~lobby.storage.Database`: ``read()`` / ``write()``);
* ``accounts``, ``sessions``, ``characters`` (the core services);
* ``hub`` (:class:`~lobby.hub.Hub`: ``register`` WS handlers, presence hooks,
  ``broadcast`` / ``send_to_character``);
* ``api`` (:class:`~lobby.http.api.Api`: ``add`` / ``route`` REST endpoints,
  which also appear in the OpenAPI document);
* ``key`` (:class:`~lobby.keys.LobbyKey`, the ticket signing key);
* ``services``: a dict where services may publish themselves by name for one
  another (``ctx.services["parties"]``);
* ``metrics`` (:class:`~lobby.metrics.LobbyMetrics`): this lobby's Prometheus families.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lobby.config import Clock, LobbySettings
from lobby.metrics import LobbyMetrics

if TYPE_CHECKING:
    from lobby.accounts import AccountService
    from lobby.characters import CharacterService
    from lobby.game.world import WorldDefinition
    from lobby.http.api import Api
    from lobby.hub import Hub
    from lobby.keys import LobbyKey
    from lobby.sessions import SessionStore
    from lobby.storage import Database

__all__ = ["LobbyContext"]


@dataclass(eq=False, slots=True)
class LobbyContext:
    """The running lobby's shared objects (see the module docstring)."""

    settings: LobbySettings
    clock: Clock
    world: WorldDefinition
    db: Database
    accounts: AccountService
    sessions: SessionStore
    characters: CharacterService
    hub: Hub
    api: Api
    key: LobbyKey
    started_at: float
    services: dict[str, Any] = field(default_factory=dict)
    metrics: LobbyMetrics = field(default_factory=LobbyMetrics)
