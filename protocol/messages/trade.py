"""Trade messages: TRADE_REQUEST, _ACCEPT, _DECLINE, _UPDATE, _COMPLETE.

The lobby owns the trade window; value moves only in its single transaction on
completion.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, Strict

from protocol.messages.base import (
    BaseMessage,
    Gold,
    Id,
    MessageType,
    Name,
    RefId,
    ShortText,
    StrictModel,
)

__all__ = [
    "MAX_TRADE_ITEMS",
    "TradeAcceptMessage",
    "TradeCompleteMessage",
    "TradeDeclineMessage",
    "TradeItem",
    "TradeOffer",
    "TradeRequestMessage",
    "TradeUpdateMessage",
]

MAX_TRADE_ITEMS = 32


class TradeItem(StrictModel):
    """An item (stack) offered in a trade."""

    item_id: Id
    name: Name | None = None
    quantity: Annotated[int, Strict(), Field(ge=1, le=1_000_000)] = 1


class TradeOffer(StrictModel):
    """One side of a trade window."""

    character_id: Id
    items: list[TradeItem] = Field(default_factory=list, max_length=MAX_TRADE_ITEMS)
    gold: Gold = 0
    confirmed: bool = False


class TradeRequestMessage(BaseMessage):
    """Ask a character (by id or name) to trade."""

    type: Literal[MessageType.TRADE_REQUEST] = MessageType.TRADE_REQUEST
    trade_id: RefId | None = None
    initiator_id: Id | None = None
    initiator_name: Name | None = None
    target_id: Id | None = None
    target_name: Name | None = None


class TradeAcceptMessage(BaseMessage):
    """Accept a trade request."""

    type: Literal[MessageType.TRADE_ACCEPT] = MessageType.TRADE_ACCEPT
    trade_id: RefId
    character_id: Id | None = None


class TradeDeclineMessage(BaseMessage):
    """Decline (or cancel) a trade."""

    type: Literal[MessageType.TRADE_DECLINE] = MessageType.TRADE_DECLINE
    trade_id: RefId
    character_id: Id | None = None
    reason: ShortText | None = None


class TradeUpdateMessage(BaseMessage):
    """A change to the sender's offer (client), or the whole window (lobby: ``offers``)."""

    type: Literal[MessageType.TRADE_UPDATE] = MessageType.TRADE_UPDATE
    trade_id: RefId
    character_id: Id | None = None
    items: list[TradeItem] = Field(default_factory=list, max_length=MAX_TRADE_ITEMS)
    gold: Gold = 0
    confirmed: bool = False
    offers: list[TradeOffer] = Field(default_factory=list, max_length=2)


class TradeCompleteMessage(BaseMessage):
    """The trade was executed (or failed, with a reason)."""

    type: Literal[MessageType.TRADE_COMPLETE] = MessageType.TRADE_COMPLETE
    trade_id: RefId
    success: bool = True
    offers: list[TradeOffer] = Field(default_factory=list, max_length=2)
    reason: ShortText | None = None
