"""Fan-out of the lobby's pushes to whichever process holds each recipient.

The hub delivers every push to the matching presences it holds itself, then
hands it to a :class:`Broker` with the :class:`Audience` it was meant for
(everyone, a faction, a location, a character, a session, an account). The
broker forwards it to the other lobby processes, each of which delivers it to
*its* matching presences (:meth:`lobby.hub.Hub.deliver`). A recipient is held by
one process, so every push reaches it once.

* :class:`LocalBroker` (the default, one process): forwards nothing. The hub's
  local delivery is the whole fan-out, and costs what it did before.
* :class:`lobby.cluster.RedisBroker` (``--redis-url``): a Redis stream every
  process reads, plus the cluster's presence directory (who is online where).
  It is *sequenced*: the hub hands it even the pushes it has recipients for, and
  delivers them when they come back from the stream, each with its resume cursor
  (the stream entry id), in the one order every process sees
  (:mod:`protocol.resume`). A client resuming anywhere is replayed what it missed
  from the stream (:meth:`Broker.replay`).

An :class:`Audience` is also a predicate over presences (``audience(presence)``),
so ``hub.broadcast(msg, where=Audience.faction("Verdant Pact"))`` both selects
the local recipients and names the remote ones. A plain ``lambda`` given as
``where`` stays process-local: the broker cannot ship code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from protocol.errors import LobbyError
from protocol.resume import CursorKey, stamp

if TYPE_CHECKING:
    from lobby.presence import Presence

__all__ = ["Audience", "AudienceKind", "Broker", "LocalBroker", "Push", "PushHandler", "Replayed"]


class AudienceKind(StrEnum):
    EVERYONE = "all"
    FACTION = "faction"
    LOCATION = "location"
    CHARACTER = "character"
    SESSION = "session"
    ACCOUNT = "account"


_INT_KEYED = frozenset(
    {AudienceKind.LOCATION, AudienceKind.CHARACTER, AudienceKind.SESSION, AudienceKind.ACCOUNT}
)


@dataclass(frozen=True, slots=True)
class Audience:
    """Who a push is for, in a form every process can evaluate against its own presences.

    ``exclude_session`` / ``exclude_character`` leave one sender out (a player
    entering an area is not told about himself).
    """

    kind: AudienceKind
    key: int | str | None = None
    exclude_session: int | None = None
    exclude_character: int | None = None

    @classmethod
    def everyone(cls, *, exclude_session: int | None = None) -> Audience:
        return cls(AudienceKind.EVERYONE, None, exclude_session)

    @classmethod
    def faction(cls, name: str) -> Audience:
        return cls(AudienceKind.FACTION, name)

    @classmethod
    def location(
        cls,
        location_id: int,
        *,
        exclude_session: int | None = None,
        exclude_character: int | None = None,
    ) -> Audience:
        return cls(AudienceKind.LOCATION, location_id, exclude_session, exclude_character)

    @classmethod
    def character(cls, character_id: int) -> Audience:
        return cls(AudienceKind.CHARACTER, character_id)

    @classmethod
    def session(cls, session_id: int) -> Audience:
        return cls(AudienceKind.SESSION, session_id)

    @classmethod
    def account(cls, account_id: int) -> Audience:
        return cls(AudienceKind.ACCOUNT, account_id)

    def __call__(self, p: Presence) -> bool:
        """True if presence ``p`` is one of this audience."""
        if p.session_id == self.exclude_session:
            return False
        c = p.character
        if self.exclude_character is not None and c is not None and c.id == self.exclude_character:
            return False
        kind = self.kind
        if kind is AudienceKind.EVERYONE:
            return True
        if kind is AudienceKind.SESSION:
            return p.session_id == self.key
        if kind is AudienceKind.ACCOUNT:
            return p.account_id == self.key
        if c is None:
            return False
        if kind is AudienceKind.FACTION:
            return c.faction == self.key
        if kind is AudienceKind.LOCATION:
            return c.location_id == self.key
        return c.id == self.key

    def encode(self) -> str:
        """Compact text, ``kind|key|exclude_session|exclude_character`` (see :meth:`decode`)."""
        return "|".join(
            (
                self.kind.value,
                "" if self.key is None else str(self.key),
                "" if self.exclude_session is None else str(self.exclude_session),
                "" if self.exclude_character is None else str(self.exclude_character),
            )
        )

    @classmethod
    def decode(cls, text: str) -> Audience:
        """Parse :meth:`encode`'s form (:class:`LobbyError` if it is not one)."""
        try:
            kind_s, key_s, exs, exc = text.split("|")
            kind = AudienceKind(kind_s)
            key: int | str | None
            if kind in _INT_KEYED:
                key = int(key_s)
            else:
                key = key_s or None
            return cls(kind, key, int(exs) if exs else None, int(exc) if exc else None)
        except ValueError:
            raise LobbyError(f"not an audience: {text[:80]!r}") from None


@dataclass(slots=True)
class Push:
    """One encoded push as the hub delivers it: the message text and, when it has one,
    its resume cursor (``key`` is the cursor as the pair it compares as)."""

    text: str
    cursor: str | None = None
    key: CursorKey | None = None
    _stamped: str | None = None

    def stamped(self) -> str:
        """The text with its cursor as first member (what a client asking for cursors
        gets); made once per push, whatever the number of recipients."""
        if self.cursor is None:
            return self.text
        if self._stamped is None:
            self._stamped = stamp(self.text, self.cursor)
        return self._stamped


@dataclass(frozen=True, slots=True)
class Replayed:
    """What :meth:`Broker.replay` found after a cursor: the pushes, in order, with the
    audience each was for, and whether they are all there were (False: some are gone)."""

    pushes: list[tuple[Audience, Push]]
    complete: bool


PushHandler = Callable[[Audience, str], int]
"""``handler(audience, text)``: deliver a push that came from another process (the hub's
:meth:`~lobby.hub.Hub.deliver`); returns how many local presences took it."""


class Broker(Protocol):
    """What the hub needs to reach the presences other processes hold."""

    @property
    def distributed(self) -> bool:
        """False when this process is the whole lobby (nothing to forward)."""

    @property
    def sequenced(self) -> bool:
        """True when the broker delivers every push it is given, the local recipients'
        too, through :meth:`lobby.hub.Hub.deliver_push` with a cursor, in one order
        (the hub then delivers nothing itself and can :meth:`replay`)."""

    def forward(self, audience: Audience, text: str, *, here: bool = False) -> int:
        """Hand ``text`` (an encoded push) to the other processes holding ``audience``
        (sequenced: to every process, this one included, when ``here`` says this one
        holds some of the audience).

        Never blocks: the broker queues and sends in the background. Returns how
        many other processes it went to (0: nobody elsewhere is of the audience,
        as far as the presence directory knows).
        """

    async def replay(self, after: CursorKey) -> Replayed:
        """The pushes sequenced after cursor ``after`` that the broker still keeps (only
        when :attr:`sequenced`; otherwise nothing, incomplete)."""

    def online_elsewhere(self, character_id: int) -> bool:
        """True if another process holds a presence playing ``character_id``."""

    def session_elsewhere(self, character_id: int) -> int | None:
        """The session id of the presence another process holds for ``character_id``."""

    def location_elsewhere(self, character_id: int) -> int | None:
        """Where the character another process holds stands (None: not held elsewhere)."""

    @property
    def players_elsewhere(self) -> int:
        """Presences with a character the other processes hold (the directory's count)."""

    def players_elsewhere_at(self) -> Mapping[int, int]:
        """Location id -> presences with a character there that other processes hold."""

    def moved(self, presence: Presence) -> None:
        """``presence`` (held here) changed location: tell the other processes' directories."""

    def lock(self, name: str) -> AbstractAsyncContextManager[None]:
        """Hold the cluster-wide lock ``name`` for the block (alone: nothing to hold).

        Raises :class:`LobbyError` ``unavailable`` if it cannot be had in time.
        """

    def notify(self, topic: str, data: str = "") -> None:
        """Tell the other processes about ``topic`` (their :meth:`on_notify` callbacks get
        ``data``), in order with this process's pushes."""

    def on_notify(self, topic: str, callback: Callable[[str], None]) -> None:
        """Call ``callback(data)`` when another process notifies ``topic``."""

    async def flushed(self) -> None:
        """Return once what was forwarded so far has left for the other processes (or was
        dropped: Redis unreachable). Bounded in time; alone, at once."""

    def remember(self, key: str, ttl: float) -> None:
        """Note ``key`` for ``ttl`` seconds, cluster-wide, *after* everything forwarded so
        far: once :meth:`recalls` sees it, those pushes have gone out. Alone: nothing."""

    async def recalls(self, key: str) -> bool:
        """Has some process :meth:`remember` ed ``key`` (within its ttl)? Alone: False."""


class LocalBroker:
    """One process: the hub's own delivery is the whole fan-out."""

    distributed = False
    sequenced = False

    def forward(self, audience: Audience, text: str, *, here: bool = False) -> int:
        del audience, text, here
        return 0

    async def replay(self, after: CursorKey) -> Replayed:
        del after
        return Replayed([], complete=False)

    def online_elsewhere(self, character_id: int) -> bool:
        del character_id
        return False

    def session_elsewhere(self, character_id: int) -> int | None:
        del character_id
        return None

    def location_elsewhere(self, character_id: int) -> int | None:
        del character_id
        return None

    players_elsewhere = 0

    def players_elsewhere_at(self) -> Mapping[int, int]:
        return {}

    def moved(self, presence: Presence) -> None:
        del presence

    def lock(self, name: str) -> AbstractAsyncContextManager[None]:
        del name
        return contextlib.nullcontext()

    def notify(self, topic: str, data: str = "") -> None:
        del topic, data

    def on_notify(self, topic: str, callback: Callable[[str], None]) -> None:
        del topic, callback

    async def flushed(self) -> None:
        return None

    def remember(self, key: str, ttl: float) -> None:
        del key, ttl

    async def recalls(self, key: str) -> bool:
        del key
        return False
