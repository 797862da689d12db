"""The ``details`` of the lobby's ``ACK`` to each game request, defined once.

A game request sent over the lobby WebSocket is answered by an ``ACK`` whose
``ref_id`` is the request's ``message_id`` (or by an ``ERROR``). The lobby's
services build the ``details`` object from these models
(:meth:`AckDetails.details`); ``NetworkClient`` parses the same models with
:func:`~protocol.rest.parse_body` (a ``DecodeError`` when the details do not
match), so a key renamed on one side is a type error on the other. Field names
are the JSON keys on the wire.

Like the REST bodies (:class:`~protocol.rest.Body`), each model reads like the
JSON object it was (``ack["party_id"]``, ``ack.get("target_id")``,
``"version" in ack``), and reading ignores keys it does not know (a newer lobby).

=================================================  ==================================
``MOVE``                                           :class:`MoveAck`
``COMBAT_START``                                   :class:`CombatStartAck`
``COMBAT_ACTION``                                  :class:`CombatActionAck`
``SHARD_CAPTURE``                                  :class:`ShardCaptureAck`
``PARTY_CREATE``, ``_ACCEPT``, ``_DECLINE``,       :class:`PartyAck`
``_LEAVE``, ``_DISBAND``
``PARTY_INVITE``, ``PARTY_KICK``                   :class:`PartyTargetAck`
``TRADE_REQUEST``                                  :class:`TradeRequestAck`
``TRADE_ACCEPT``, ``TRADE_DECLINE``                :class:`TradeAck`
``TRADE_UPDATE`` (also confirming)                 :class:`TradeOfferAck`
=================================================  ==================================
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from protocol.rest import Body

__all__ = [
    "AckDetails",
    "CombatActionAck",
    "CombatStartAck",
    "MoveAck",
    "PartyAck",
    "PartyTargetAck",
    "ShardCaptureAck",
    "TradeAck",
    "TradeOfferAck",
    "TradeRequestAck",
]


class AckDetails(Body):
    """Base of the ``details`` of an ``ACK``."""

    def details(self) -> dict[str, Any]:
        """The JSON object the lobby sends as the ACK's ``details``."""
        return self.model_dump(mode="json")


# -- movement, combat, shards ---------------------------------------------------------------


class MoveAck(AckDetails):
    """``MOVE`` done: where the character is now and where it came from."""

    location_id: int
    previous_location_id: int


class CombatStartAck(AckDetails):
    """``COMBAT_START`` done: the fight's id and its seed (outcomes follow from the seed and
    the actions, so a client can replay them)."""

    combat_id: str
    seed: int


class CombatActionAck(AckDetails):
    """``COMBAT_ACTION`` resolved: the fight and the round it was resolved in."""

    combat_id: str
    round: int = Field(
        description="the fight's sequence number after this action (each action counts one)"
    )


class ShardCaptureAck(AckDetails):
    """``SHARD_CAPTURE`` done: the shard, the faction now holding it, the reality after it."""

    shard_id: int
    faction: str
    current_reality: str


# -- parties ----------------------------------------------------------------------------------


class PartyAck(AckDetails):
    """A party request done (create, accept, decline, leave, disband): the party it concerned.

    The party's state itself arrives as ``PARTY_UPDATE``.
    """

    party_id: str


class PartyTargetAck(PartyAck):
    """``PARTY_INVITE`` or ``PARTY_KICK`` done: the party and the character invited or kicked."""

    target_id: int


# -- trades -----------------------------------------------------------------------------------


class TradeAck(AckDetails):
    """A trade request done (accept, decline): the trade it concerned.

    The trade window itself arrives as ``TRADE_UPDATE``.
    """

    trade_id: str


class TradeRequestAck(TradeAck):
    """``TRADE_REQUEST`` sent: the new trade and the character asked."""

    target_id: int


class TradeOfferAck(TradeAck):
    """``TRADE_UPDATE`` (an offer, or a confirmation) accepted: the window's version now."""

    version: int = Field(description="bumped by every change of either offer")
