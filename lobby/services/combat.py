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
from collections.abc import Iterable
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from lobby.connection import Connection
from lobby.context import LobbyContext
from lobby.game.combat import ActionResult, Combat, make_combatant
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
    register_handler,
)
from lobby.services.inventory import consume_item, items_of
from lobby.storage import characters
from protocol.errors import ErrorCode, LobbyError
from protocol.messages import CombatActionMessage, CombatStartMessage, MessageType

__all__ = ["CombatService"]

log = logging.getLogger("lobby.combat")


class CombatService:
    """Running combats of one lobby (published as ``ctx.services["combat"]``)."""

    name = "combat"

    def __init__(self, *, seed: int | None = None) -> None:
        self._ctx: LobbyContext | None = None
        self._seed = seed
        self._count = 0
        self.combats: dict[str, Combat] = {}
        self._of: dict[int, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def setup(self, ctx: LobbyContext) -> None:
        self._ctx = ctx
        register_handler(ctx, MessageType.COMBAT_START, self.on_start)
        register_handler(ctx, MessageType.COMBAT_ACTION, self.on_action)
        ctx.hub.on_leave(self._on_presence_leave)
        ctx.services[self.name] = self

    async def close(self) -> None:
        self._ctx = None

    def in_combat(self, character_id: int) -> bool:
        return character_id in self._of

    def combat_of(self, character_id: int) -> Combat | None:
        combat_id = self._of.get(character_id)
        return self.combats.get(combat_id) if combat_id is not None else None

    # -- WebSocket ------------------------------------------------------------------------

    async def on_start(self, conn: Connection, msg: CombatStartMessage) -> None:
        ctx = self._context()
        me = acting_character(conn)
        targets = list(dict.fromkeys(c.id for c in msg.participants if c.id != me.id))
        if not targets:
            raise LobbyError("name at least one opponent", code=ErrorCode.INVALID_TARGET)
        if len(targets) > 8:
            raise LobbyError("at most 8 opponents", code=ErrorCode.INVALID_TARGET)
        row = await ctx.characters.get(me.id)
        if row is None:
            raise LobbyError("your character no longer exists", code=ErrorCode.NOT_FOUND)
        self._refuse_fighting((me.id, *targets))
        fighters = []
        async with ctx.db.read() as db:
            for cid, side in ((me.id, "attackers"), *((t, "defenders") for t in targets)):
                presence = ctx.hub.presence_of_character(cid)
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
        # checked again: another start may have taken one of them during the awaits above;
        # no await from here until they are registered in self._of
        self._refuse_fighting([f.character_id for f in fighters])
        self._count += 1
        seed = self._seed + self._count if self._seed is not None else secrets.randbits(48)
        combat = Combat.start(
            ctx.world,
            combat_id=f"c{secrets.token_hex(6)}",
            seed=seed,
            participants=fighters,
            now=ctx.clock(),
            location_id=row.location_id,
        )
        self.combats[combat.combat_id] = combat
        for f in fighters:
            self._of[f.character_id] = combat.combat_id
        self._send_all(combat, [combat_start_message(combat, initiator_id=me.id)])
        ack(conn, msg.message_id, combat_id=combat.combat_id, seed=seed)

    async def on_action(self, conn: Connection, msg: CombatActionMessage) -> None:
        me = acting_character(conn)
        if msg.actor_id is not None and msg.actor_id != me.id:
            raise LobbyError(
                "you can only act as your own character",
                code=ErrorCode.FORBIDDEN,
                details={"actor_id": msg.actor_id},
            )
        combat = self.combats.get(msg.combat_id)
        if combat is None:
            raise LobbyError(
                "no such combat", code=ErrorCode.NOT_IN_COMBAT, details={"combat_id": msg.combat_id}
            )
        async with self._lock_of(combat):
            result = await self._act(conn, msg, combat)
        self._send_all(combat, combat_result_messages(combat, result))
        if result.ended:
            await self._end(combat)
        ack(conn, msg.message_id, combat_id=combat.combat_id, round=combat.seq)

    # -- helpers --------------------------------------------------------------------------

    def _refuse_fighting(self, character_ids: Iterable[int]) -> None:
        for cid in character_ids:
            if self.in_combat(cid):
                raise LobbyError(
                    f"character {cid} is already fighting",
                    code=ErrorCode.CONFLICT,
                    details={"character_id": cid},
                )

    async def _act(
        self, conn: Connection, msg: CombatActionMessage, combat: Combat
    ) -> ActionResult:
        """Consume the item (if any), resolve the action and store health and mana, atomically.

        One write transaction: an item no longer owned (traded away since the fight
        began) refuses the action with ``ITEM_NOT_OWNED``; any failure rolls the
        deletion back and leaves the in-memory combat as it was.
        """
        ctx = self._context()
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
                self._restore(combat, before)
                raise
        return result

    def _restore(self, combat: Combat, saved: dict[str, Any]) -> None:
        """Put ``combat`` back (in place: others hold it) to a :meth:`Combat.to_dict` state."""
        vars(combat).update(vars(Combat.from_dict(self._context().world, saved)))

    def _lock_of(self, combat: Combat) -> asyncio.Lock:
        return self._locks.setdefault(combat.combat_id, asyncio.Lock())

    async def _store(self, combat: Combat) -> None:
        async with self._context().db.write() as db:
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
        ctx = self._context()
        self.combats.pop(combat.combat_id, None)
        self._locks.pop(combat.combat_id, None)
        for f in combat.participants():
            if self._of.get(f.character_id) == combat.combat_id:
                del self._of[f.character_id]
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
        hub = self._context().hub
        for f in combat.participants():
            for m in messages:
                hub.send_to_character(f.character_id, m.model_copy())

    async def _on_presence_leave(self, presence: Presence) -> None:
        if presence.character is None or self._ctx is None:
            return
        combat = self.combat_of(presence.character.id)
        if combat is None or combat.ended:
            return
        async with self._lock_of(combat):
            if combat.ended:
                return
            try:
                result = combat.withdraw(presence.character.id, now=self._ctx.clock())
            except LobbyError:
                return
            await self._store(combat)
        self._send_all(combat, [combat_state_message(combat)])
        if result.ended:
            await self._end(combat)

    def _context(self) -> LobbyContext:
        if self._ctx is None:
            raise LobbyError("combat is not running", code=ErrorCode.UNAVAILABLE)
        return self._ctx
