"""Who is near: the client's view of other players, kept current from messages.

:class:`NearbyTracker` is pure (no I/O, time passed in): the client feeds it
every message from the lobby and from peers, and it keeps one
:class:`NearbyPlayer` per character it heard of, with its location:

* ``PLAYER_JOINED_AREA`` and ``PEER_INFO`` add (or refresh) a player;
* ``PLAYER_LEFT_AREA`` forgets it (or moves it, when ``to_location_id`` is set);
* ``LOCATION_UPDATE`` and ``CHARACTER_UPDATE`` update location, level, faction,
  position;
* ``POSITION_UPDATE`` (movement datagrams from peers, already newest-wins in
  the node) updates position, velocity and location.

Every update stamps ``last_seen``. When our own location changes, players seen
elsewhere are forgotten (the lobby stops telling us about them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocol.messages.base import BaseMessage
from protocol.messages.characters import CharacterUpdateMessage
from protocol.messages.location import (
    LocationUpdateMessage,
    PlayerJoinedAreaMessage,
    PlayerLeftAreaMessage,
    PositionUpdateMessage,
    Vec3,
)
from protocol.messages.peer import PeerInfoMessage

__all__ = ["NearbyPlayer", "NearbyTracker"]


@dataclass(slots=True)
class NearbyPlayer:
    """Another player as this client last heard of them (the seed's fields first)."""

    character_id: int
    character_name: str
    level: int | None = None
    faction: str | None = None
    position: Vec3 | None = None
    last_seen: float = 0.0
    location_id: int | None = None
    velocity: Vec3 | None = None
    peer_id: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


class NearbyTracker:
    """The players this client knows of, by character id (see the module docstring)."""

    def __init__(self) -> None:
        self._players: dict[int, NearbyPlayer] = {}
        self.own_character_id: int | None = None
        self.own_location_id: int | None = None

    def players(self, location_id: int | None = None) -> list[NearbyPlayer]:
        """Players at ``location_id`` (None: at our own location), by name."""
        where = self.own_location_id if location_id is None else location_id
        found = [p for p in self._players.values() if p.location_id == where]
        return sorted(found, key=lambda p: (p.character_name.casefold(), p.character_id))

    def get(self, character_id: int) -> NearbyPlayer | None:
        return self._players.get(character_id)

    def by_name(self, name: str) -> NearbyPlayer | None:
        """A known player by character name (case-insensitive)."""
        folded = name.casefold()
        for player in self._players.values():
            if player.character_name.casefold() == folded:
                return player
        return None

    def set_own(self, character_id: int | None, location_id: int | None) -> None:
        """Our character and location; a new location forgets players seen elsewhere."""
        changed = location_id != self.own_location_id or character_id != self.own_character_id
        self.own_character_id = character_id
        self.own_location_id = location_id
        if changed:
            self._players = {
                cid: p for cid, p in self._players.items() if p.location_id == location_id
            }

    def clear(self) -> None:
        self._players.clear()

    def observe(self, msg: BaseMessage, now: float) -> bool:
        """Apply one message; True if it changed the view."""
        if isinstance(msg, PositionUpdateMessage):
            return self._position(msg, now)
        if isinstance(msg, PlayerJoinedAreaMessage):
            player = self._ensure(msg.character_id, msg.character_name, now)
            _refresh(player, msg.location_id, msg.level, msg.faction, msg.position)
            return True
        if isinstance(msg, PeerInfoMessage):
            player = self._ensure(msg.character_id, msg.character_name, now)
            _refresh(player, msg.location_id, msg.level, msg.faction, None)
            player.peer_id = msg.node_id or player.peer_id
            return True
        if isinstance(msg, PlayerLeftAreaMessage):
            if msg.character_id == self.own_character_id:
                return False
            leaving = self._players.get(msg.character_id)
            if leaving is None:
                return False
            if msg.to_location_id is not None and msg.to_location_id == self.own_location_id:
                leaving.location_id = msg.to_location_id
                leaving.last_seen = now
            else:
                del self._players[msg.character_id]
            return True
        if isinstance(msg, LocationUpdateMessage):
            if msg.character_id == self.own_character_id:
                self.set_own(self.own_character_id, msg.location_id)
                return True
            player = self._ensure(msg.character_id, msg.character_name, now)
            player.location_id = msg.location_id
            return True
        if isinstance(msg, CharacterUpdateMessage):
            if msg.character_id == self.own_character_id:
                if msg.location_id is not None and msg.location_id != self.own_location_id:
                    self.set_own(self.own_character_id, msg.location_id)
                return True
            player = self._ensure(msg.character_id, msg.character_name, now)
            _refresh(player, msg.location_id, msg.level, msg.faction, msg.position)
            return True
        return False

    def _ensure(self, character_id: int, name: str | None, now: float) -> NearbyPlayer:
        player = self._players.get(character_id)
        if player is None:
            player = NearbyPlayer(character_id, name or f"#{character_id}")
            self._players[character_id] = player
        elif name:
            player.character_name = name
        player.last_seen = now
        return player

    def _position(self, msg: PositionUpdateMessage, now: float) -> bool:
        if msg.character_id == self.own_character_id:
            return False
        known = self._players.get(msg.character_id)
        if known is None:
            known = NearbyPlayer(msg.character_id, f"#{msg.character_id}")
            self._players[msg.character_id] = known
        player = known
        player.position = msg.position
        player.velocity = msg.velocity
        player.location_id = msg.location_id
        player.last_seen = now
        return True


def _refresh(
    player: NearbyPlayer,
    location_id: int | None,
    level: int | None,
    faction: str | None,
    position: Vec3 | None,
) -> None:
    """Take what a message says of ``player``; a field it leaves out (None) is kept."""
    if location_id is not None:
        player.location_id = location_id
    if level is not None:
        player.level = level
    if faction is not None:
        player.faction = faction
    if position is not None:
        player.position = position
