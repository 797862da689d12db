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
* ``services`` (:class:`LobbyServices`): the lobby's services, collected once
  at start before any ``setup``. The parts one service asks of another have a
  typed role each (``services.directory``, ``services.parties``,
  ``services.combat``; ``None`` when no service of that name runs);
  ``services.require(WorldService)`` finds a service by its class;
* ``metrics`` (:class:`~lobby.metrics.LobbyMetrics`): this lobby's Prometheus families;
* ``buckets`` (:class:`~lobby.ratelimit.BucketStore` or ``None``): where rate-limit
  budgets shared by every lobby process live (``None``: one process, keep them local).

A service keeps the context it was set up with in a :class:`ContextSlot`, the one
place that decides whether it is running: a hook or timer that fires after
``close()`` gets ``ERROR unavailable`` from it rather than a stale context.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

from lobby.config import Clock, LobbySettings
from lobby.metrics import LobbyMetrics
from protocol.errors import ConfigError, ErrorCode, LobbyError

if TYPE_CHECKING:
    from lobby.accounts import AccountService
    from lobby.characters import CharacterService
    from lobby.game.world import WorldDefinition
    from lobby.http.api import Api
    from lobby.hub import Hub
    from lobby.keys import LobbyKey
    from lobby.presence import Presence
    from lobby.ratelimit import BucketStore
    from lobby.server import LobbyService
    from lobby.sessions import SessionStore
    from lobby.storage import Database

__all__ = [
    "CombatRoster",
    "ContextSlot",
    "LobbyContext",
    "LobbyServices",
    "PartyRoster",
    "PeerDirectory",
]

S = TypeVar("S")


@runtime_checkable
class PeerDirectory(Protocol):
    """The ``directory`` role: who gets whose ``PEER_INFO`` (:mod:`lobby.services.directory`)."""

    @property
    def relayed_messages(self) -> int:
        """``RELAY`` envelopes forwarded since start."""
        ...

    def introduce(self, presence: Presence) -> int:
        """Exchange ``PEER_INFO`` between ``presence`` and the players at its location."""
        ...

    def introduce_members(self, character_ids: Iterable[int], *, focus: int | None = None) -> int:
        """Exchange ``PEER_INFO`` among the online characters of ``character_ids``."""
        ...

    async def reselected(self, session_id: int) -> int:
        """The session selected its character again (renewed ticket): refresh and re-introduce."""
        ...


@runtime_checkable
class PartyRoster(Protocol):
    """The ``parties`` role (:mod:`lobby.services.party`)."""

    def member_ids_of(self, character_id: int) -> list[int]:
        """The members of ``character_id``'s party (itself included), or ``[]``."""
        ...


@runtime_checkable
class CombatRoster(Protocol):
    """The ``combat`` role (:mod:`lobby.services.combat`)."""

    async def in_combat(self, character_id: int) -> bool:
        """Is ``character_id`` in a running fight (on any lobby process)?"""
        ...


@dataclass(frozen=True, slots=True)
class LobbyServices:
    """The running lobby's services, collected once at start (see the module docstring).

    ``all`` holds every service in setup order. A role is filled by the service of
    that ``name`` (the last one, if several share it); a service that takes a role's
    name without offering what the role needs refuses the start (``ConfigError``).
    """

    all: tuple[LobbyService, ...] = ()
    directory: PeerDirectory | None = None
    parties: PartyRoster | None = None
    combat: CombatRoster | None = None

    @classmethod
    def collect(cls, services: Sequence[LobbyService]) -> LobbyServices:
        by_name = {s.name: s for s in services}
        for name, role in _ROLES:
            service = by_name.get(name)
            if service is not None and not isinstance(service, role):
                raise ConfigError(
                    f"the service named {name!r} ({type(service).__name__}) does not provide "
                    f"{role.__name__}, which the other services ask of {name!r}"
                )
        directory, parties, combat = (by_name.get(name) for name, _ in _ROLES)
        return cls(
            all=tuple(services),
            directory=directory if isinstance(directory, PeerDirectory) else None,
            parties=parties if isinstance(parties, PartyRoster) else None,
            combat=combat if isinstance(combat, CombatRoster) else None,
        )

    def find(self, kind: type[S]) -> S | None:
        """The running service of class ``kind``, or None when none runs."""
        for service in self.all:
            if isinstance(service, kind):
                return service
        return None

    def require(self, kind: type[S]) -> S:
        """The running service of class ``kind`` (``LobbyError unavailable`` when none)."""
        service = self.find(kind)
        if service is None:
            raise LobbyError(f"no {kind.__name__} is running", code=ErrorCode.UNAVAILABLE)
        return service


_ROLES: tuple[tuple[str, type], ...] = (
    ("directory", PeerDirectory),
    ("parties", PartyRoster),
    ("combat", CombatRoster),
)


class ContextSlot:
    """The context one service runs in: set by ``setup``, cleared by ``close``.

    :attr:`ctx` is that context, or ``LobbyError unavailable`` naming the service
    when it is not running; :attr:`current` is the context or ``None``, for
    hooks that have nothing to do then.
    """

    __slots__ = ("_ctx", "_what")

    def __init__(self, what: str) -> None:
        """``what`` names the service in the error: ``"the combat service"``, ``"chat"``."""
        self._what = what
        self._ctx: LobbyContext | None = None

    def attach(self, ctx: LobbyContext) -> LobbyContext:
        self._ctx = ctx
        return ctx

    def detach(self) -> LobbyContext | None:
        """Stop running; return the context it ran in (to undo what ``setup`` hooked in)."""
        ctx, self._ctx = self._ctx, None
        return ctx

    @property
    def current(self) -> LobbyContext | None:
        return self._ctx

    @property
    def ctx(self) -> LobbyContext:
        if self._ctx is None:
            raise LobbyError(f"{self._what} is not running", code=ErrorCode.UNAVAILABLE)
        return self._ctx


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
    services: LobbyServices
    metrics: LobbyMetrics = field(default_factory=LobbyMetrics)
    buckets: BucketStore | None = None
    stun_port: int | None = None
    """The UDP port the lobby's STUN responder answers on (None: it does not run)."""
