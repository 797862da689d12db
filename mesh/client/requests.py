"""The game requests ``NetworkClient`` sends the lobby, built from its friendlier arguments.

Pure functions: a target given as a character id or a name becomes the
``target_id`` / ``target_name`` field, trade items given as ids, a
``{item_id: quantity}`` mapping or :class:`TradeItem` become a list of
:class:`TradeItem`, and a trade confirmation carries the window it confirms.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from protocol.messages.combat import Combatant, CombatStartMessage
from protocol.messages.party import PartyInviteMessage
from protocol.messages.trade import TradeItem, TradeRequestMessage, TradeUpdateMessage

__all__ = [
    "TradeItemsLike",
    "combat_start",
    "party_invite",
    "trade_confirmation",
    "trade_items",
    "trade_request",
]

TradeItemsLike = Iterable[int] | Mapping[int, int] | Iterable[TradeItem]
"""Items to offer: item ids (one each), ``{item_id: quantity}``, or :class:`TradeItem`."""


def trade_items(items: TradeItemsLike) -> list[TradeItem]:
    """``items`` as the :class:`TradeItem` list of a ``TRADE_UPDATE``."""
    if isinstance(items, Mapping):
        return [TradeItem(item_id=int(k), quantity=int(v)) for k, v in items.items()]
    return [i if isinstance(i, TradeItem) else TradeItem(item_id=int(i)) for i in items]


def combat_start(target_ids: Iterable[int]) -> CombatStartMessage:
    """Attack ``target_ids``; the lobby names the combat (its ACK carries ``combat_id``)."""
    return CombatStartMessage(
        combat_id="new",
        participants=[
            Combatant(id=int(t), name=f"#{int(t)}", health=1, max_health=1) for t in target_ids
        ],
    )


def party_invite(target: int | str, party_id: str | None) -> PartyInviteMessage:
    """Invite a character (id or name) to ``party_id`` (None: the lobby creates one)."""
    if isinstance(target, int):
        return PartyInviteMessage(target_id=target, party_id=party_id)
    return PartyInviteMessage(target_name=target, party_id=party_id)


def trade_request(target: int | str) -> TradeRequestMessage:
    """Ask a character (id or name) to trade."""
    if isinstance(target, int):
        return TradeRequestMessage(target_id=target)
    return TradeRequestMessage(target_name=target)


def trade_confirmation(
    trade_id: str,
    me: int,
    window: TradeUpdateMessage | None,
    items: TradeItemsLike | None = None,
    gold: int | None = None,
) -> TradeUpdateMessage:
    """Confirm ``window`` (the last ``TRADE_UPDATE`` seen) as character ``me``.

    ``items``/``gold`` default to our offer in that window; the window's offers
    are sent along so the lobby refuses (``trade_invalid``) if it changed meanwhile.
    """
    offers = list(window.offers) if window is not None else []
    mine = next((o for o in offers if o.character_id == me), None)
    return TradeUpdateMessage(
        trade_id=trade_id,
        items=trade_items(items) if items is not None else (mine.items if mine else []),
        gold=gold if gold is not None else (mine.gold if mine else 0),
        confirmed=True,
        offers=offers,
    )
