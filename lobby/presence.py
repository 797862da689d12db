"""Who is in one lobby process: each session's :class:`Presence` and the indexes over them.

A :class:`Presence` is one session's place in the lobby (account, selected character,
live connection if any, reconnect backlog, resume cursors). :class:`PresenceIndex`
holds every presence of the process by session id and keeps three indexes in step
with it, so the hub's routing never scans everyone: by character, by location (both
for presences with a character) and by account (every presence). The index is the
only writer of ``Presence.character`` once a presence is in it
(:meth:`PresenceIndex.set_character`), which is what keeps the indexes true; the
hub (:mod:`lobby.hub`) owns one and decides when presences come, go and change.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lobby.broker import Push
from protocol.resume import CursorKey

if TYPE_CHECKING:
    from lobby.connection import Connection

__all__ = ["CharacterInfo", "Presence", "PresenceIndex"]


@dataclass(frozen=True, slots=True)
class CharacterInfo:
    """What the hub knows of a selected character (kept current by services)."""

    id: int
    name: str
    faction: str
    location_id: int
    level: int = 1


@dataclass(eq=False, slots=True)
class Presence:
    """One session's presence in the lobby, connected or inside its reconnect grace."""

    session_id: int
    account_id: int
    username: str
    is_admin: bool
    resume_key: str = field(repr=False)
    """The session's token hash: a connection resumes this presence only with it."""
    character: CharacterInfo | None = None
    conn: Connection | None = None
    disconnected_at: float | None = None
    backlog: deque[Push] = field(default_factory=deque)
    dropped: int = 0
    stamps: bool = False
    """Its connection asked for resume cursors (they are stamped on its pushes)."""
    cursor: CursorKey | None = None
    """The cursor of the last push delivered to it (or the one it resumed from): a push
    at or before it is never delivered to it again."""
    since: CursorKey | None = None
    """Every sequenced push from this cursor on was handled here (the first delivered,
    or ``(0, 0)`` after a replay): what a hand-over from another process may skip."""
    replaying: list[Push] | None = None
    """While a resume is being replayed: the live pushes that wait behind the replay."""

    @property
    def online(self) -> bool:
        return self.conn is not None

    @property
    def character_id(self) -> int | None:
        return None if self.character is None else self.character.id


class PresenceIndex:
    """Every presence of one process by session id, with its indexes kept in step.

    ``by_session``, ``by_character`` (character id -> {session id: presence}),
    ``by_location`` (location id -> presences) and ``by_account`` (account id ->
    {session id: presence}) are read directly by the hub's routing; only the methods
    below change them. ``players`` counts the presences with a character and
    ``version`` is bumped whenever a presence comes or goes or its selected character
    changes (not on a location or level update): a cache of the online count keys on it.
    """

    __slots__ = ("by_account", "by_character", "by_location", "by_session", "players", "version")

    def __init__(self) -> None:
        self.by_session: dict[int, Presence] = {}
        self.by_character: dict[int, dict[int, Presence]] = {}
        self.by_location: dict[int, set[Presence]] = {}
        self.by_account: dict[int, dict[int, Presence]] = {}
        self.players = 0
        self.version = 0

    def holds(self, p: Presence) -> bool:
        """True if ``p`` is the presence indexed under its session id."""
        return self.by_session.get(p.session_id) is p

    def of_character(self, character_id: int) -> Presence | None:
        """The presence playing ``character_id``; the oldest if several briefly do."""
        holders = self.by_character.get(character_id)
        if not holders:
            return None
        if len(holders) == 1:
            return next(iter(holders.values()))
        # more than one session holds it (briefly, around a re-select): the oldest presence
        return next(p for p in self.by_session.values() if p.session_id in holders)

    def live_connections_of(self, account_id: int) -> int:
        """Live connections of ``account_id`` (costs its own sessions, not everyone's)."""
        mine = self.by_account.get(account_id)
        return 0 if not mine else sum(1 for p in mine.values() if p.conn is not None)

    def add(self, p: Presence) -> None:
        self.by_session[p.session_id] = p
        self.by_account.setdefault(p.account_id, {})[p.session_id] = p
        self._index(p)
        self.version += 1

    def remove(self, p: Presence) -> bool:
        """Take ``p`` out of every index; False if it was not the one indexed."""
        if not self.holds(p):
            return False
        del self.by_session[p.session_id]
        mine = self.by_account.get(p.account_id)
        if mine is not None and mine.get(p.session_id) is p:
            del mine[p.session_id]
            if not mine:
                del self.by_account[p.account_id]
        self._unindex(p)
        self.version += 1
        return True

    def set_character(self, p: Presence, character: CharacterInfo | None) -> None:
        """Change ``p.character`` keeping the indexes in step (the only writer of it)."""
        indexed = self.holds(p)
        if indexed:
            self._unindex(p)
        before = p.character_id
        p.character = character
        if indexed:
            self._index(p)
            if p.character_id != before:
                self.version += 1

    def clear(self) -> None:
        self.by_session.clear()
        self.by_character.clear()
        self.by_location.clear()
        self.by_account.clear()
        self.players = 0
        self.version += 1

    def _index(self, p: Presence) -> None:
        if p.character is None:
            return
        self.players += 1
        self.by_character.setdefault(p.character.id, {})[p.session_id] = p
        self.by_location.setdefault(p.character.location_id, set()).add(p)

    def _unindex(self, p: Presence) -> None:
        if p.character is None:
            return
        self.players -= 1
        holders = self.by_character.get(p.character.id)
        if holders is not None and holders.get(p.session_id) is p:
            del holders[p.session_id]
            if not holders:
                del self.by_character[p.character.id]
        here = self.by_location.get(p.character.location_id)
        if here is not None:
            here.discard(p)
            if not here:
                del self.by_location[p.character.location_id]
