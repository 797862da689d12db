"""What a client knows of its own game: character, party, trades, world, who is near.

:class:`ClientState` is pure (no I/O, time passed in), in the manner of
:class:`~mesh.client.nearby.NearbyTracker`, which it holds: ``NetworkClient``
feeds it every message from the lobby and from peers (:meth:`ClientState.observe`)
and the REST answers about characters, and reads the view back.

* ``PARTY_UPDATE`` naming our character sets :attr:`party` (one that does not
  clears it); ``PARTY_DISBAND`` of our party clears it.
* ``WORLD_STATE`` is kept as :attr:`world_state`.
* ``TRADE_UPDATE`` keeps the last window of each open trade (:attr:`trades`);
  ``TRADE_COMPLETE`` / ``TRADE_DECLINE`` forget it.
* ``CHARACTER_UPDATE`` / ``LOCATION_UPDATE`` of our character update
  :attr:`character` (its stats and location).

When our own location changes, :meth:`observe` (and :meth:`moved_to`) return a
:class:`Moved`: where we are now and which characters stopped being near (the
players seen at the old location, party members excepted), so the caller
can drop their peer connections.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from mesh.client.nearby import NearbyTracker
from protocol.errors import ErrorCode, NotConnectedError
from protocol.messages.base import BaseMessage
from protocol.messages.characters import CharacterUpdateMessage
from protocol.messages.location import LocationUpdateMessage
from protocol.messages.party import PartyDisbandMessage, PartyUpdateMessage
from protocol.messages.trade import (
    TradeCompleteMessage,
    TradeDeclineMessage,
    TradeUpdateMessage,
)
from protocol.messages.world import WorldStateMessage
from protocol.rest import CharacterOut

__all__ = ["ClientState", "Moved"]


@dataclass(frozen=True, slots=True)
class Moved:
    """Our character is at ``location_id`` now; ``forgotten`` players are no longer near."""

    location_id: int
    forgotten: tuple[int, ...] = ()


class ClientState:
    """One client's view of its own game (see the module docstring)."""

    def __init__(self) -> None:
        self.nearby = NearbyTracker()
        """Other players by character id, with their location and position."""
        self._character: CharacterOut | None = None
        self._listed: int | None = None
        self._party: PartyUpdateMessage | None = None
        self._world_state: WorldStateMessage | None = None
        self._trades: dict[str, TradeUpdateMessage] = {}

    # -- reading ------------------------------------------------------------------------------

    @property
    def character(self) -> CharacterOut | None:
        """The selected character as last heard of (None before a select)."""
        return self._character

    @property
    def party(self) -> PartyUpdateMessage | None:
        """Our party (the last ``PARTY_UPDATE`` naming us), or None."""
        return self._party

    @property
    def world_state(self) -> WorldStateMessage | None:
        """The last ``WORLD_STATE`` pushed by the lobby, or None."""
        return self._world_state

    @property
    def trades(self) -> Mapping[str, TradeUpdateMessage]:
        """The last trade window (``TRADE_UPDATE``) of each open trade, by trade id."""
        return MappingProxyType(self._trades)

    def party_member_ids(self) -> set[int]:
        """Character ids of our party's members (empty outside a party)."""
        if self._party is None:
            return set()
        return {m.character_id for m in self._party.members}

    def require_character(self) -> CharacterOut:
        """The selected character; raises :class:`NotConnectedError` saying what to do."""
        if self._character is not None:
            return self._character
        if self._listed == 0:
            hint = (
                "this account has no character yet: create one with "
                "create_character(name, faction, character_class), then select_character(id)"
            )
        else:
            hint = "call select_character(id) with an id from get_characters()"
        raise NotConnectedError(f"no character selected: {hint}", code=ErrorCode.NO_CHARACTER)

    # -- changing -----------------------------------------------------------------------------

    def characters_listed(self, characters: Sequence[CharacterOut]) -> None:
        """The account's characters as the lobby listed them (our selection stays)."""
        self._listed = len(characters)
        if self._character is not None:
            for character in characters:
                if character.id == self._character.id:
                    self._character = character

    def character_created(self) -> None:
        """The account has one character more than listed."""
        if self._listed is not None:
            self._listed += 1

    def select(self, character: CharacterOut) -> None:
        """``character`` is selected; another one before it takes its party and view along."""
        if self._character is not None and self._character.id != character.id:
            self._party = None
            self.nearby.clear()
        self._character = character
        self.nearby.set_own(character.id, character.location_id)

    def reset(self) -> None:
        """Forget the selection and everything heard since (on disconnect)."""
        self._character = None
        self._party = None
        self._world_state = None
        self._trades.clear()
        self.nearby.clear()
        self.nearby.set_own(None, None)

    def moved_to(self, location_id: int) -> Moved | None:
        """Our character is at ``location_id`` now (an ACK or an update said so).

        Returns the :class:`Moved` when the location changed, else None.
        """
        character = self._character
        if character is None:
            return None
        if character.location_id != location_id:
            self._character = character.model_copy(update={"location_id": location_id})
        if self.nearby.own_location_id == location_id:
            return None
        keep = self.party_member_ids()
        forgotten = tuple(
            p.character_id for p in self.nearby.players() if p.character_id not in keep
        )
        self.nearby.set_own(character.id, location_id)
        return Moved(location_id, forgotten)

    def observe(self, msg: BaseMessage, now: float) -> Moved | None:
        """Apply one message from the lobby or a peer; a :class:`Moved` if we moved."""
        moved: Moved | None = None
        if isinstance(msg, PartyUpdateMessage):
            me = self._character
            mine = me is not None and any(m.character_id == me.id for m in msg.members)
            self._party = msg if mine else None
        elif isinstance(msg, PartyDisbandMessage):
            if self._party is not None and self._party.party_id == msg.party_id:
                self._party = None
        elif isinstance(msg, WorldStateMessage):
            self._world_state = msg
        elif isinstance(msg, TradeUpdateMessage):
            self._trades[msg.trade_id] = msg
        elif isinstance(msg, TradeCompleteMessage | TradeDeclineMessage):
            self._trades.pop(msg.trade_id, None)
        elif isinstance(msg, LocationUpdateMessage | CharacterUpdateMessage):
            moved = self._own_update(msg)
        self.nearby.observe(msg, now)
        return moved

    def _own_update(self, msg: LocationUpdateMessage | CharacterUpdateMessage) -> Moved | None:
        character = self._character
        if character is None or msg.character_id != character.id:
            return None
        if isinstance(msg, CharacterUpdateMessage):
            fields = CharacterOut.model_fields
            changes = {k: v for k, v in msg.model_dump().items() if k in fields and v is not None}
            changes.pop("location_id", None)  # moved_to below
            self._character = character.model_copy(update=changes)
        if msg.location_id is None:
            return None
        return self.moved_to(msg.location_id)
