"""Trading: the :class:`~lobby.game.trade.Trade` rules over WS, each step one transaction.

WebSocket (each request answered ``ACK`` with ``details.trade_id`` or ``ERROR``):

* ``TRADE_REQUEST(target_id | target_name)``: the target must be online (on any
  lobby process of a cluster); it gets ``TRADE_REQUEST`` (trade_id, initiator). A
  character has one unfinished trade.
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

A trade lives in the database (:mod:`lobby.services.engagements`), not in a lobby
process: every step reads it locked, applies the rules and writes it back in one
transaction, so the two players may be on different processes of a cluster, and
the trade outlives the process that started it. Pushes to a player on another
process go through the cluster's broker.

When both have confirmed, the exchange runs in the transaction of the last
confirmation: the items and gold are read (``FOR UPDATE`` on PostgreSQL), then moved
by conditional ``UPDATE`` s whose ``WHERE`` re-checks the owner / the gold, each
required to touch exactly one row, and the trade is recorded and removed; any miss
rolls all of it back and the trade is then cancelled with the reason. Both get
``TRADE_COMPLETE`` (``success`` true, or false with the reason).

A participant who leaves (disconnects for good, switches character) cancels its
unfinished trade. A player whose lobby process died and who comes back (on any
process, through the balancer) is sent the trade again: ``TRADE_REQUEST`` if it
still waits for his answer, else ``TRADE_UPDATE`` with the window; one who does not
come back within ``reconnect_grace`` is treated as having left. An unanswered
request expires (both get ``TRADE_COMPLETE`` with reason ``expired``).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from lobby.connection import Connection
from lobby.context import ContextSlot, LobbyContext
from lobby.game.messages import trade_complete_message, trade_update_message
from lobby.game.trade import Offer, Trade, TradeExchange, TradeStatus, unique_item_ids
from lobby.presence import Presence
from lobby.services._common import (
    ack,
    acting_character,
    character_named,
    online_anywhere,
    present_anywhere,
    push_character_updates,
    register_handler,
)
from lobby.services.engagements import Absences, EngagementStore, Held
from lobby.services.inventory import gold_of, items_of
from lobby.storage import characters
from lobby.storage.game_schema import items, trades
from protocol.acks import TradeAck, TradeOfferAck, TradeRequestAck
from protocol.errors import ErrorCode, GameRuleError, LobbyError
from protocol.messages import (
    MessageType,
    TradeAcceptMessage,
    TradeDeclineMessage,
    TradeRequestMessage,
    TradeUpdateMessage,
)

__all__ = ["TradeService", "apply_exchange"]

log = logging.getLogger("lobby.trade")


@dataclass
class _Stored:
    """A trade as stored: the state machine plus the names its messages show."""

    trade: Trade
    player_names: dict[int, str] = field(default_factory=dict)
    item_names: dict[int, str] = field(default_factory=dict)

    @classmethod
    def of(cls, data: dict[str, Any]) -> _Stored:
        return cls(
            Trade.from_dict(data["trade"]),
            {int(k): str(v) for k, v in data.get("player_names", {}).items()},
            {int(k): str(v) for k, v in data.get("item_names", {}).items()},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "trade": self.trade.to_dict(),
            "player_names": {str(k): v for k, v in self.player_names.items()},
            "item_names": {str(k): v for k, v in self.item_names.items()},
        }


class _ExchangeRefused(LobbyError):
    """The exchange could not be stored (its transaction rolls back); ``reason`` says why.

    Raised out of the confirming step's transaction and caught right outside it: the
    trade is then cancelled with the reason in a transaction of its own.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason, code=ErrorCode.TRADE_INVALID)
        self.reason = reason


class TradeService:
    """Trades of the lobby (of every process of a cluster: they live in the database)."""

    name = "trades"

    def __init__(self) -> None:
        self._slot = ContextSlot("trading")
        self._store = EngagementStore(
            "trade",
            busy_code=ErrorCode.TRADE_INVALID,
            busy_text="character {character_id} is already trading",
        )
        self._absences = Absences()
        self.completed = 0
        self.failed = 0

    async def setup(self, ctx: LobbyContext) -> None:
        self._slot.attach(ctx)
        for msg_type, handler in (
            (MessageType.TRADE_REQUEST, self.on_request),
            (MessageType.TRADE_ACCEPT, self.on_accept),
            (MessageType.TRADE_DECLINE, self.on_decline),
            (MessageType.TRADE_UPDATE, self.on_update),
        ):
            register_handler(ctx, msg_type, handler)
        ctx.hub.on_join(self._on_join)
        ctx.hub.on_leave(self._on_presence_leave)

    async def close(self) -> None:
        self._slot.detach()

    async def trade_of(self, character_id: int) -> Trade | None:
        """``character_id``'s unfinished trade as stored now, or None."""
        stored = await self._stored_of(character_id)
        return None if stored is None else stored.trade

    async def _stored_of(self, character_id: int) -> _Stored | None:
        async with self._slot.ctx.db.read() as db:
            trade_id = await self._store.of(db, character_id)
            data = None if trade_id is None else await self._store.read(db, trade_id)
        return None if data is None else _Stored.of(data)

    # -- WebSocket ------------------------------------------------------------------------

    async def on_request(self, conn: Connection, msg: TradeRequestMessage) -> None:
        ctx = self._slot.ctx
        me = acting_character(conn)
        partner_id, partner_name = await self._online_target(msg.target_id, msg.target_name)
        for cid in (me.id, partner_id):  # a request nobody answered in time frees them
            await self._expire_of(cid)
        now = ctx.clock()
        trade = Trade.request(
            f"t{secrets.token_hex(6)}",
            initiator_id=me.id,
            partner_id=partner_id,
            now=now,
            rules=ctx.world.rules,
        )
        stored = _Stored(trade, {me.id: me.name, partner_id: partner_name})
        async with ctx.db.write() as db:
            await self._store.insert(db, trade.trade_id, trade.participants, stored.to_dict(), now)
        ctx.hub.send_to_character(partner_id, self._request_message(stored))
        ack(conn, msg.message_id, TradeRequestAck(trade_id=trade.trade_id, target_id=partner_id))

    async def on_accept(self, conn: Connection, msg: TradeAcceptMessage) -> None:
        me = acting_character(conn)
        now = self._slot.ctx.clock()
        stored = await self._step(msg.trade_id, me.id, lambda s: s.trade.accept(me.id, now=now))
        self._push_window(stored)
        ack(conn, msg.message_id, TradeAck(trade_id=msg.trade_id))

    async def on_decline(self, conn: Connection, msg: TradeDeclineMessage) -> None:
        me = acting_character(conn)
        now = self._slot.ctx.clock()
        reason = msg.reason or f"declined by {me.name}"

        def decline(stored: _Stored) -> None:
            trade = stored.trade
            if trade.status is TradeStatus.REQUESTED and me.id == trade.partner_id:
                trade.decline(me.id, now=now)
                trade.cancel_reason = reason
            else:
                trade.cancel(me.id, reason=reason)

        stored = await self._step(msg.trade_id, me.id, decline)
        self._slot.ctx.hub.send_to_character(
            stored.trade.other(me.id),
            TradeDeclineMessage(trade_id=msg.trade_id, character_id=me.id, reason=reason),
        )
        self._finish(stored)
        ack(conn, msg.message_id, TradeAck(trade_id=msg.trade_id))

    async def on_update(self, conn: Connection, msg: TradeUpdateMessage) -> None:
        ctx = self._slot.ctx
        me = acting_character(
            conn, claimed=msg.character_id, refusal="you can only change your own offer"
        )
        wanted = unique_item_ids((i.item_id, i.quantity) for i in msg.items)
        seen = [
            (o.character_id, Offer.of(((i.item_id, i.quantity) for i in o.items), o.gold))
            for o in msg.offers or ()
        ]

        async def offer(db: AsyncConnection, stored: _Stored) -> TradeExchange | None:
            """Apply the offer and the confirmation: the exchange if both have confirmed."""
            trade = stored.trade
            if trade.changes_offer(me.id, items=wanted, gold=msg.gold):
                owned = await items_of(db, me.id)
                trade.update_offer(
                    me.id,
                    items=wanted,
                    gold=msg.gold,
                    owned_items=owned,
                    gold_available=await gold_of(db, me.id),
                )
                for item_id in wanted:
                    template = ctx.world.item(owned[item_id])
                    if template is not None:
                        stored.item_names[item_id] = template.name
            return trade.confirm(me.id, seen=seen) if msg.confirmed else None

        refused: _ExchangeRefused | None = None
        try:
            async with ctx.db.write() as db:
                held, stored = await self._hold(db, msg.trade_id, me.id)
                exchange = await offer(db, stored)
                if exchange is not None:
                    await self._settle(db, stored, exchange)
                await self._put(db, held, stored)
        except _ExchangeRefused as exc:
            refused = exc
        if refused is not None:
            # nothing of the last step was stored: take it again, now to cancel the trade
            async with ctx.db.write() as db:
                held, stored = await self._hold(db, msg.trade_id, me.id)
                try:
                    again = await offer(db, stored)
                except GameRuleError:  # the window or the goods changed meanwhile
                    again = None
                if again is not None:
                    stored.trade.failed(refused.reason)
                else:
                    stored.trade.cancel(me.id, reason=refused.reason)
                await self._put(db, held, stored)
            self.failed += 1
        trade = stored.trade
        self._push_window(stored)
        ack(conn, msg.message_id, TradeOfferAck(trade_id=trade.trade_id, version=trade.version))
        if trade.finished:
            self._finish(stored)
        if trade.status is TradeStatus.COMPLETED:
            self.completed += 1
            await push_character_updates(ctx, trade.participants)

    # -- steps ----------------------------------------------------------------------------

    async def _step(self, trade_id: str, me: int, change: Callable[[_Stored], None]) -> _Stored:
        """Apply ``change`` to the stored trade in one transaction and return it.

        A rule refusal that finished the trade anyway (an expired request) still
        stores the end and tells both sides, then refuses.
        """
        ctx = self._slot.ctx
        refusal: GameRuleError | None = None
        async with ctx.db.write() as db:
            held, stored = await self._hold(db, trade_id, me)
            try:
                change(stored)
            except GameRuleError as exc:
                if not stored.trade.finished:
                    raise
                refusal = exc
            await self._put(db, held, stored)
        if refusal is not None:
            self._finish(stored)
            raise refusal
        return stored

    async def _hold(self, db: AsyncConnection, trade_id: str, me: int) -> tuple[Held, _Stored]:
        held = await self._store.hold(db, trade_id)
        stored = None if held is None else _Stored.of(held.data)
        if held is None or stored is None or me not in stored.trade.participants:
            raise LobbyError(
                f"no trade {trade_id!r} of yours",
                code=ErrorCode.NOT_FOUND,
                details={"trade_id": trade_id[:64]},
            )
        return held, stored

    async def _put(self, db: AsyncConnection, held: Held, stored: _Stored) -> None:
        """Store the trade, or remove it when it is over."""
        now = self._slot.ctx.clock()
        if stored.trade.finished:
            await self._store.drop(db, held)
        else:
            held.data = stored.to_dict()
            await self._store.save(db, held, now)

    async def _settle(self, db: AsyncConnection, stored: _Stored, exchange: TradeExchange) -> None:
        """Move the goods inside ``db``'s transaction (:class:`_ExchangeRefused` if they cannot)."""
        trade = stored.trade
        try:
            await apply_exchange(db, exchange, self._slot.ctx.clock())
        except LobbyError as exc:
            log.info("trade %s refused at commit: %s", trade.trade_id, exc.message)
            raise _ExchangeRefused(exc.message[:200]) from None
        except DBAPIError as exc:  # e.g. a serialization failure: nothing was stored
            log.warning("trade %s: database refused the exchange: %s", trade.trade_id, exc)
            raise _ExchangeRefused("the database refused the exchange; trade again") from None
        trade.committed()

    async def _cancel_for(self, character_id: int, reason: str) -> None:
        """Cancel ``character_id``'s unfinished trade, if any, and tell both sides."""

        def cancel(trade: Trade) -> bool:
            trade.cancel(character_id, reason=reason)
            return True

        await self._end_for(character_id, cancel)

    async def _expire_of(self, character_id: int) -> None:
        """End ``character_id``'s trade request if it expired unanswered."""
        now = self._slot.ctx.clock()
        await self._end_for(character_id, lambda trade: trade.expire(now))

    async def _end_for(self, character_id: int, end: Callable[[Trade], bool]) -> None:
        """End ``character_id``'s trade if ``end(trade)`` ends it (True); tell both sides."""
        ctx = self._slot.ctx
        async with ctx.db.read() as db:  # most are not trading: no write transaction then
            if await self._store.of(db, character_id) is None:
                return
        async with ctx.db.write() as db:
            trade_id = await self._store.of(db, character_id)
            held = None if trade_id is None else await self._store.hold(db, trade_id)
            if held is None:
                return
            stored = _Stored.of(held.data)
            if not end(stored.trade):
                return
            await self._store.drop(db, held)
        self._finish(stored)

    # -- hooks ------------------------------------------------------------------------------

    async def maintain(self) -> None:
        """Expire unanswered requests; cancel the trades of players gone for good (their
        lobby process died and they did not come back within ``reconnect_grace``)."""
        ctx = self._slot.current
        if ctx is None:
            return
        async with ctx.db.read() as db:
            stored = [_Stored.of(data) for _, data in await self._store.all(db)]
        now = ctx.clock()
        gone = self._absences.gone(
            (cid for s in stored for cid in s.trade.participants),
            present=lambda cid: present_anywhere(ctx.hub, cid),
            now=now,
            grace=ctx.settings.reconnect_grace,
        )
        for s in stored:
            trade = s.trade
            if trade.status is TradeStatus.REQUESTED and now >= trade.expires_at:
                await self._expire_of(trade.initiator_id)
                continue
            for cid in trade.participants:
                if cid in gone:
                    log.info("trade %s: character %d is gone; cancelled", trade.trade_id, cid)
                    await self._cancel_for(cid, "disconnected")
                    break

    async def _on_join(self, presence: Presence) -> None:
        """A player (back, maybe on another process) is shown its unfinished trade."""
        if presence.character is None or self._slot.current is None:
            return
        me = presence.character.id
        stored = await self._stored_of(me)
        if stored is None:
            return
        hub = self._slot.ctx.hub
        if stored.trade.status is TradeStatus.REQUESTED:
            if me == stored.trade.partner_id:
                hub.send_to_session(presence.session_id, self._request_message(stored))
        else:
            hub.send_to_session(
                presence.session_id,
                trade_update_message(stored.trade, item_names=stored.item_names),
            )

    async def _on_presence_leave(self, presence: Presence) -> None:
        if presence.character is None or self._slot.current is None:
            return
        try:
            await self._cancel_for(presence.character.id, "disconnected")
        except GameRuleError:  # finished meanwhile
            return

    # -- helpers --------------------------------------------------------------------------

    def _finish(self, stored: _Stored) -> None:
        """Tell both sides how the trade ended."""
        hub = self._slot.ctx.hub
        msg = trade_complete_message(stored.trade, item_names=stored.item_names)
        for cid in stored.trade.participants:
            hub.send_to_character(cid, msg.model_copy())

    def _push_window(self, stored: _Stored) -> None:
        hub = self._slot.ctx.hub
        msg = trade_update_message(stored.trade, item_names=stored.item_names)
        for cid in stored.trade.participants:
            hub.send_to_character(cid, msg.model_copy())

    @staticmethod
    def _request_message(stored: _Stored) -> TradeRequestMessage:
        trade = stored.trade
        return TradeRequestMessage(
            trade_id=trade.trade_id,
            initiator_id=trade.initiator_id,
            initiator_name=stored.player_names.get(trade.initiator_id),
            target_id=trade.partner_id,
            target_name=stored.player_names.get(trade.partner_id),
        )

    async def _online_target(
        self, target_id: int | None, target_name: str | None
    ) -> tuple[int, str]:
        """The target's id and name; it must be online on some lobby process."""
        ctx = self._slot.ctx
        found = await character_named(ctx, target_id, target_name)
        if found is None or not online_anywhere(ctx.hub, found.id):
            raise LobbyError(
                "that character is not online",
                code=ErrorCode.NOT_FOUND,
                details={"target": str(target_id or target_name)[:64]},
            )
        return found.id, found.name


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
