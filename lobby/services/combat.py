"""Server-authoritative combat: :class:`~lobby.game.combat.Combat` wired to players and storage.

WebSocket:

* ``COMBAT_START(participants=[{"id": <target character id>, ...}])``: the
  session's character attacks the listed characters (only the ``id`` of each entry
  is read). Everyone must be online, at the attacker's location, alive and not
  already fighting; safe locations refuse (``FORBIDDEN``). Both sides get
  ``COMBAT_START``; the attacker gets ``ACK`` with ``details.combat_id`` and
  ``details.seed`` (outcomes are fixed by the seed and the actions, so they can be
  replayed with :class:`~lobby.game.combat.Combat`).
* ``COMBAT_ACTION(combat_id, action_type, target_id?, ability_name?, item_id?)``:
  the actor is the session's character (an ``actor_id`` naming anyone else is
  ``FORBIDDEN``); the rules check membership (``NOT_IN_COMBAT`` for someone
  else's combat), target, cooldowns, mana and items. Every participant gets
  ``COMBAT_DAMAGE`` / ``COMBAT_HEAL`` per effect and ``COMBAT_STATE``; health and
  mana are written after each action and a used item is consumed (deleted), in
  one transaction: an item traded away since the fight began is ``ITEM_NOT_OWNED``
  and a refused or failed action changes nothing.
  ``ACK`` carries ``details.combat_id`` and ``details.round``.
* When one side is left (death or flight) each participant gets ``COMBAT_END``
  from its own point of view; defeated characters are stored with 1 health (they
  are wounded, not dead, outside combat).

A participant who leaves the lobby (disconnect for good) withdraws, which
counts as a flight. A character in combat cannot ``MOVE``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from lobby.connection import Connection
from lobby.context import ContextSlot, LobbyContext
from lobby.game.combat import ActionResult, Combat, CombatBook, make_combatant
from lobby.game.messages import (
    combat_end_message,
    combat_result_messages,
    combat_start_message,
    combat_state_message,
)
from lobby.hub import Presence
from lobby.services._common import (
    ack,
    acting_character,
    push_character_updates,
    refuse_if_elsewhere,
    register_handler,
    stored_character,
)
from lobby.services.inventory import consume_item, items_of
from lobby.storage import characters
from protocol.acks import CombatActionAck, CombatStartAck
from protocol.errors import ErrorCode, LobbyError
from protocol.messages import CombatActionMessage, CombatStartMessage, MessageType

__all__ = ["CombatService"]

log = logging.getLogger("lobby.combat")


class CombatService:
    """Running combats of one lobby (the ``ctx.services.combat`` role)."""

    name = "combat"

    def __init__(self, *, seed: int | None = None) -> None:
        self._slot = ContextSlot("combat")
        self._seed = seed
        self._count = 0
        self.book = CombatBook()
        self._locks: dict[str, asyncio.Lock] = {}

    async def setup(self, ctx: LobbyContext) -> None:
        self._slot.attach(ctx)
        register_handler(ctx, MessageType.COMBAT_START, self.on_start)
        register_handler(ctx, MessageType.COMBAT_ACTION, self.on_action)
        ctx.hub.on_leave(self._on_presence_leave)

    async def close(self) -> None:
        self._slot.detach()

    def in_combat(self, character_id: int) -> bool:
        return self.book.in_combat(character_id)

    # -- WebSocket ------------------------------------------------------------------------

    async def on_start(self, conn: Connection, msg: CombatStartMessage) -> None:
        ctx = self._slot.ctx
        me = acting_character(conn)
        targets = self.book.opponents(me.id, (c.id for c in msg.participants))
        row = await stored_character(ctx, me.id)
        self.book.check_free((me.id, *targets))
        fighters = []
        async with ctx.db.read() as db:
            for cid, side in ((me.id, "attackers"), *((t, "defenders") for t in targets)):
                presence = ctx.hub.presence_of_character(cid)
                if presence is None:
                    refuse_if_elsewhere(ctx, cid, "a fight")
                char = await ctx.characters.get(cid)
                if (
                    char is None
                    or presence is None
                    or not presence.online
                    or char.location_id != row.location_id
                ):
                    raise LobbyError(
                        f"character {cid} is not here to fight",
                        code=ErrorCode.INVALID_TARGET,
                        details={"target_id": cid},
                    )
                fighters.append(
                    make_combatant(
                        ctx.world,
                        character_id=char.id,
                        name=char.name,
                        class_name=char.character_class,
                        level=char.level,
                        side=side,
                        health=char.health,
                        mana=char.mana,
                        items=await items_of(db, char.id),
                    )
                )
        seed = self._seed + self._count + 1 if self._seed is not None else secrets.randbits(48)
        combat = Combat.start(
            ctx.world,
            combat_id=f"c{secrets.token_hex(6)}",
            seed=seed,
            participants=fighters,
            now=ctx.clock(),
            location_id=row.location_id,
        )
        # the book checks the fighters again: another start may have taken one of them
        # during the awaits above
        self.book.add(combat)
        self._count += 1
        self._send_all(combat, [combat_start_message(combat, initiator_id=me.id)])
        ack(conn, msg.message_id, CombatStartAck(combat_id=combat.combat_id, seed=seed))

    async def on_action(self, conn: Connection, msg: CombatActionMessage) -> None:
        acting_character(conn, claimed=msg.actor_id, field="actor_id")
        combat = self.book.require(msg.combat_id)
        async with self._lock_of(combat):
            result = await self._act(conn, msg, combat)
        self._send_all(combat, combat_result_messages(combat, result))
        if result.ended:
            await self._end(combat)
        ack(conn, msg.message_id, CombatActionAck(combat_id=combat.combat_id, round=combat.seq))

    # -- helpers --------------------------------------------------------------------------

    async def _act(
        self, conn: Connection, msg: CombatActionMessage, combat: Combat
    ) -> ActionResult:
        """Consume the item (if any), resolve the action and store health and mana, atomically.

        One write transaction: an item no longer owned (traded away since the fight
        began) refuses the action with ``ITEM_NOT_OWNED``; any failure rolls the
        deletion back and leaves the in-memory combat as it was.
        """
        ctx = self._slot.ctx
        actor_id = acting_character(conn).id
        async with ctx.db.write() as db:
            fighter = combat.participant(actor_id)
            if (
                msg.action_type == "item"
                and msg.item_id is not None
                and fighter is not None
                and msg.item_id in fighter.items
                and not await consume_item(db, actor_id, msg.item_id)
            ):
                raise LobbyError(
                    "you no longer own that item",
                    code=ErrorCode.ITEM_NOT_OWNED,
                    details={"item_id": msg.item_id},
                )
            before = combat.to_dict()  # no await between this and act()
            try:
                result = combat.act(
                    actor_id,
                    msg.action_type,
                    now=ctx.clock(),
                    target_id=msg.target_id,
                    ability_name=msg.ability_name,
                    item_id=msg.item_id,
                )
                await self._write_state(db, combat)
            except BaseException:
                combat.restore(before)
                raise
        return result

    def _lock_of(self, combat: Combat) -> asyncio.Lock:
        return self._locks.setdefault(combat.combat_id, asyncio.Lock())

    async def _store(self, combat: Combat) -> None:
        async with self._slot.ctx.db.write() as db:
            await self._write_state(db, combat)

    @staticmethod
    async def _write_state(db: AsyncConnection, combat: Combat) -> None:
        for f in combat.participants():
            await db.execute(
                update(characters)
                .where(characters.c.id == f.character_id)
                .values(health=f.health, mana=f.mana)
            )

    async def _end(self, combat: Combat) -> None:
        """Store the defeated as wounded, forget the combat, then tell everyone (in that order)."""
        ctx = self._slot.ctx
        self.book.finish(combat)
        self._locks.pop(combat.combat_id, None)
        defeated = [f.character_id for f in combat.participants() if not f.alive]
        if defeated:
            async with ctx.db.write() as db:
                await db.execute(
                    update(characters).where(characters.c.id.in_(defeated)).values(health=1)
                )
        for f in combat.participants():
            ctx.hub.send_to_character(f.character_id, combat_end_message(combat, f.character_id))
        await push_character_updates(ctx, [f.character_id for f in combat.participants()])
        log.info("combat %s ended (%s)", combat.combat_id, combat.end.reason if combat.end else "")

    def _send_all(self, combat: Combat, messages: list[Any]) -> None:
        hub = self._slot.ctx.hub
        for f in combat.participants():
            for m in messages:
                hub.send_to_character(f.character_id, m.model_copy())

    async def _on_presence_leave(self, presence: Presence) -> None:
        ctx = self._slot.current
        if presence.character is None or ctx is None:
            return
        combat = self.book.combat_of(presence.character.id)
        if combat is None or combat.ended:
            return
        async with self._lock_of(combat):
            if combat.ended:
                return
            try:
                result = combat.withdraw(presence.character.id, now=ctx.clock())
            except LobbyError:
                return
            await self._store(combat)
        self._send_all(combat, [combat_state_message(combat)])
        if result.ended:
            await self._end(combat)
