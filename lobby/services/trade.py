"""Trading: the :class:`~lobby.game.trade.TradeBook` rules over WS, settled in one transaction.

WebSocket (each request answered ``ACK`` with ``details.trade_id`` or ``ERROR``):

* ``TRADE_REQUEST(target_id | target_name)``: the target must be online; it gets
  ``TRADE_REQUEST`` (trade_id, initiator). A character has one unfinished trade.
* ``TRADE_ACCEPT(trade_id)``: only the target, before
  ``rules.trade_request_ttl_seconds``; both get ``TRADE_UPDATE`` (the window).
* ``TRADE_DECLINE(trade_id, reason?)``: the target declines, or either side
  cancels; the other side gets ``TRADE_DECLINE`` and both ``TRADE_COMPLETE``
  (``success=false``).
* ``TRADE_UPDATE(trade_id, items, gold, confirmed, offers?)``: ``items`` and
  ``gold`` are the sender's WHOLE offer (unique item ids, quantity 1); an offer
  that differs from the current one clears both confirmations. Ownership and
  gold are checked at once (``ERROR item_not_owned`` / ``insufficient_gold``).
  ``confirmed=true`` confirms; with ``offers`` (the window as the client saw it)
  the confirmation is refused (``trade_invalid``) if the window changed since.
  Both get ``TRADE_UPDATE`` after every change.

When both have confirmed, the exchange runs as ONE database transaction: the
items and gold are read (``FOR UPDATE`` on PostgreSQL), then moved by conditional
``UPDATE`` s whose ``WHERE`` re-checks the owner / the gold, each required to touch
exactly one row; any miss rolls the whole exchange back. On SQLite the lobby's
writers are serialized by the storage layer's single-writer lock, and the
conditional updates keep the exchange correct even against a writer in another
process. Both get ``TRADE_COMPLETE`` (``success`` true, or false with the reason).

A participant who leaves (disconnects for good, switches character) cancels its
unfinished trade; a trade already committing is decided by the transaction alone.
"""

from __future__ import annotations

import json
import logging
import secrets

from sqlalchemy import insert, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from lobby.connection import Connection
from lobby.context import ContextSlot, LobbyContext
from lobby.game.messages import trade_complete_message, trade_update_message
from lobby.game.trade import Offer, Trade, TradeBook, TradeExchange, TradeStatus, unique_item_ids
from lobby.hub import Presence
from lobby.services._common import (
    ack,
    acting_character,
    push_character_updates,
    refuse_if_elsewhere,
    register_handler,
)
from lobby.services.inventory import gold_of, items_of
from lobby.storage import characters
from lobby.storage.game_schema import items, trades
from protocol.acks import TradeAck, TradeOfferAck, TradeRequestAck
from protocol.errors import ErrorCode, LobbyError
from protocol.messages import (
    MessageType,
    TradeAcceptMessage,
    TradeDeclineMessage,
    TradeRequestMessage,
    TradeUpdateMessage,
)

__all__ = ["TradeService", "apply_exchange"]

log = logging.getLogger("lobby.trade")


class TradeService:
    """Trades of one lobby."""

    name = "trades"

    def __init__(self) -> None:
        self._slot = ContextSlot("trading")
        self.book: TradeBook | None = None
        self._item_names: dict[int, str] = {}
        self.completed = 0
        self.failed = 0

    async def setup(self, ctx: LobbyContext) -> None:
        self._slot.attach(ctx)
        self.book = TradeBook(ctx.world.rules)
        for msg_type, handler in (
            (MessageType.TRADE_REQUEST, self.on_request),
            (MessageType.TRADE_ACCEPT, self.on_accept),
            (MessageType.TRADE_DECLINE, self.on_decline),
            (MessageType.TRADE_UPDATE, self.on_update),
        ):
            register_handler(ctx, msg_type, handler)
        ctx.hub.on_leave(self._on_presence_leave)

    async def close(self) -> None:
        self._slot.detach()

    # -- WebSocket ------------------------------------------------------------------------

    async def on_request(self, conn: Connection, msg: TradeRequestMessage) -> None:
        ctx = self._slot.ctx
        me = acting_character(conn)
        partner = self._online_target(msg.target_id, msg.target_name)
        if partner.character is None:  # pragma: no cover - _online_target checks it
            raise LobbyError("no such character online", code=ErrorCode.NOT_FOUND)
        self._expire()
        book = self._book()
        trade = book.request(
            me.id, partner.character.id, now=ctx.clock(), trade_id=f"t{secrets.token_hex(6)}"
        )
        ctx.hub.send_to_session(
            partner.session_id,
            TradeRequestMessage(
                trade_id=trade.trade_id,
                initiator_id=me.id,
                initiator_name=me.name,
                target_id=partner.character.id,
                target_name=partner.character.name,
            ),
        )
        ack(
            conn,
            msg.message_id,
            TradeRequestAck(trade_id=trade.trade_id, target_id=partner.character.id),
        )

    async def on_accept(self, conn: Connection, msg: TradeAcceptMessage) -> None:
        ctx = self._slot.ctx
        me = acting_character(conn)
        trade = self._book().require(msg.trade_id, me.id)
        try:
            trade.accept(me.id, now=ctx.clock())
        finally:
            if trade.finished:  # it had expired
                self._finish(trade)
        self._push_window(trade)
        ack(conn, msg.message_id, TradeAck(trade_id=trade.trade_id))

    async def on_decline(self, conn: Connection, msg: TradeDeclineMessage) -> None:
        ctx = self._slot.ctx
        me = acting_character(conn)
        trade = self._book().require(msg.trade_id, me.id)
        reason = msg.reason or f"declined by {me.name}"
        if trade.status is TradeStatus.REQUESTED and me.id == trade.partner_id:
            trade.decline(me.id, now=ctx.clock())
            trade.cancel_reason = reason
        else:
            trade.cancel(me.id, reason=reason)
        ctx.hub.send_to_character(
            trade.other(me.id),
            TradeDeclineMessage(trade_id=trade.trade_id, character_id=me.id, reason=reason),
        )
        self._finish(trade)
        ack(conn, msg.message_id, TradeAck(trade_id=trade.trade_id))

    async def on_update(self, conn: Connection, msg: TradeUpdateMessage) -> None:
        ctx = self._slot.ctx
        me = acting_character(
            conn, claimed=msg.character_id, refusal="you can only change your own offer"
        )
        trade = self._book().require(msg.trade_id, me.id)
        wanted = unique_item_ids((i.item_id, i.quantity) for i in msg.items)
        if trade.changes_offer(me.id, items=wanted, gold=msg.gold):
            async with ctx.db.read() as db:
                owned = await items_of(db, me.id)
                gold = await gold_of(db, me.id)
            trade.update_offer(
                me.id, items=wanted, gold=msg.gold, owned_items=owned, gold_available=gold
            )
            for item_id in wanted:
                template = ctx.world.item(owned[item_id])
                if template is not None:
                    self._item_names[item_id] = template.name
        exchange = None
        if msg.confirmed:
            seen = [
                (o.character_id, Offer.of(((i.item_id, i.quantity) for i in o.items), o.gold))
                for o in msg.offers or ()
            ]
            exchange = trade.confirm(me.id, seen=seen)
        self._push_window(trade)
        ack(conn, msg.message_id, TradeOfferAck(trade_id=trade.trade_id, version=trade.version))
        if exchange is not None:
            await self._commit(trade, exchange)

    # -- settlement -----------------------------------------------------------------------

    async def _commit(self, trade: Trade, exchange: TradeExchange) -> None:
        ctx = self._slot.ctx
        try:
            async with ctx.db.write() as db:
                await apply_exchange(db, exchange, ctx.clock())
        except LobbyError as exc:
            trade.failed(exc.message[:200])
            self.failed += 1
            log.info("trade %s refused at commit: %s", trade.trade_id, exc.message)
        except DBAPIError as exc:  # e.g. a serialization failure: nothing was stored
            trade.failed("the database refused the exchange; trade again")
            self.failed += 1
            log.warning("trade %s: database refused the exchange: %s", trade.trade_id, exc)
        except BaseException:
            trade.failed("the exchange could not be stored")
            self.failed += 1
            self._finish(trade)
            raise
        else:
            trade.committed()
            self.completed += 1
        self._finish(trade)
        if trade.status is TradeStatus.COMPLETED:
            await push_character_updates(ctx, trade.participants)

    # -- hooks and helpers ------------------------------------------------------------------

    async def _on_presence_leave(self, presence: Presence) -> None:
        if presence.character is None or self.book is None or self._slot.current is None:
            return
        trade = self.book.cancel_for(presence.character.id, reason="disconnected")
        if trade is not None:
            self._finish(trade)

    def _expire(self) -> None:
        for trade in self._book().expire(self._slot.ctx.clock()):
            self._finish(trade)

    def _finish(self, trade: Trade) -> None:
        """Tell both sides how the trade ended and forget it."""
        hub = self._slot.ctx.hub
        msg = trade_complete_message(trade, item_names=self._item_names)
        for cid in trade.participants:
            hub.send_to_character(cid, msg.model_copy())
        for item_id in trade.offered_items():
            self._item_names.pop(item_id, None)
        self._book().prune()

    def _push_window(self, trade: Trade) -> None:
        hub = self._slot.ctx.hub
        msg = trade_update_message(trade, item_names=self._item_names)
        for cid in trade.participants:
            hub.send_to_character(cid, msg.model_copy())

    def _online_target(self, target_id: int | None, target_name: str | None) -> Presence:
        hub = self._slot.ctx.hub
        found: Presence | None = None
        if target_id is not None:
            found = hub.presence_of_character(target_id)
            if found is None:
                refuse_if_elsewhere(self._slot.ctx, target_id, "a trade")
        elif target_name:
            key = target_name.strip().casefold()
            found = next(
                (
                    p
                    for p in hub.presences()
                    if p.character is not None and p.character.name.casefold() == key
                ),
                None,
            )
        else:
            raise LobbyError("name a target_id or target_name", code=ErrorCode.VALIDATION_ERROR)
        if found is None or not found.online or found.character is None:
            raise LobbyError(
                "that character is not online",
                code=ErrorCode.NOT_FOUND,
                details={"target": str(target_id or target_name)[:64]},
            )
        return found

    def _book(self) -> TradeBook:
        if self.book is None:
            raise LobbyError("trading is not loaded", code=ErrorCode.UNAVAILABLE)
        return self.book


async def apply_exchange(db: AsyncConnection, exchange: TradeExchange, now: float) -> None:
    """Move both sides' items and gold inside ``db``'s transaction, re-checking everything.

    Raises :class:`LobbyError` (``item_not_owned``, ``insufficient_gold``,
    ``trade_invalid``) when anything changed since the offers were made; the
    caller's transaction then rolls back and nothing moves.
    """
    # 1. read and lock what will move, in one order (items by id, then characters by id),
    #    so two exchanges touching the same rows cannot deadlock on PostgreSQL
    moving = sorted({i for t in exchange.transfers for i in t.item_ids})
    owners: dict[int, int] = {}
    if moving:
        rows = await db.execute(
            select(items.c.id, items.c.owner_id)
            .where(items.c.id.in_(moving))
            .order_by(items.c.id)
            .with_for_update()
        )
        owners = {int(r[0]): int(r[1]) for r in rows}
    people = sorted({c for t in exchange.transfers for c in (t.from_id, t.to_id)})
    rows = await db.execute(
        select(characters.c.id, characters.c.gold)
        .where(characters.c.id.in_(people))
        .order_by(characters.c.id)
        .with_for_update()
    )
    gold = {int(r[0]): int(r[1]) for r in rows}
    for t in exchange.transfers:
        missing = sorted(i for i in t.item_ids if owners.get(i) != t.from_id)
        if missing:
            raise LobbyError(
                f"character {t.from_id} no longer owns items {missing}",
                code=ErrorCode.ITEM_NOT_OWNED,
                details={"item_ids": missing, "character_id": t.from_id},
            )
        if t.from_id not in gold or t.to_id not in gold:
            raise LobbyError("a trading character is gone", code=ErrorCode.TRADE_INVALID)
        if gold[t.from_id] < t.gold:
            raise LobbyError(
                f"character {t.from_id} has {gold[t.from_id]} gold, not {t.gold}",
                code=ErrorCode.INSUFFICIENT_GOLD,
                details={"character_id": t.from_id},
            )
    # 2. move, each statement re-checking its condition and touching exactly one row
    for t in exchange.transfers:
        for item_id in t.item_ids:
            result = await db.execute(
                update(items)
                .where(items.c.id == item_id, items.c.owner_id == t.from_id)
                .values(owner_id=t.to_id)
            )
            if result.rowcount != 1:
                raise LobbyError(
                    f"item {item_id} changed hands meanwhile",
                    code=ErrorCode.ITEM_NOT_OWNED,
                    details={"item_ids": [item_id]},
                )
        if t.gold:
            taken = await db.execute(
                update(characters)
                .where(characters.c.id == t.from_id, characters.c.gold >= t.gold)
                .values(gold=characters.c.gold - t.gold)
            )
            given = await db.execute(
                update(characters)
                .where(characters.c.id == t.to_id)
                .values(gold=characters.c.gold + t.gold)
            )
            if taken.rowcount != 1 or given.rowcount != 1:
                raise LobbyError(
                    "the gold changed meanwhile",
                    code=ErrorCode.INSUFFICIENT_GOLD,
                    details={"character_id": t.from_id},
                )
    a, b = exchange.transfers
    await db.execute(
        insert(trades).values(
            trade_id=exchange.trade_id,
            initiator_id=a.from_id,
            partner_id=b.from_id,
            exchange=json.dumps(exchange.to_dict()),
            completed_at=now,
        )
    )
