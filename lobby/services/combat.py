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

A fight lives in the database (:mod:`lobby.services.engagements`), not in a lobby
process: every action reads it locked, resolves and writes it back in one
transaction with its effects, so fighters may be on different processes of a
cluster and the fight outlives the process that started it. Pushes to a fighter on
another process go through the cluster's broker. A fighter whose process died and
who comes back (on any process, through the balancer) gets ``COMBAT_STATE`` (the
fight as it stands) and fights on; one who does not come back within
``reconnect_grace`` withdraws as if he had left.
"""

from __future__ import annotations

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
from lobby.presence import Presence
from lobby.services._common import (
    ack,
    acting_character,
    online_anywhere,
    present_anywhere,
    push_character_updates,
    register_handler,
    stored_character,
)
from lobby.services.engagements import Absences, EngagementStore, Held
from lobby.services.inventory import consume_item, items_of
from lobby.storage import characters
from protocol.acks import CombatActionAck, CombatStartAck
from protocol.errors import ErrorCode, LobbyError
from protocol.messages import CombatActionMessage, CombatStartMessage, MessageType

__all__ = ["CombatService"]

log = logging.getLogger("lobby.combat")


class CombatService:
    """Running combats of the lobby (the ``ctx.services.combat`` role)."""

    name = "combat"

    def __init__(self, *, seed: int | None = None) -> None:
        self._slot = ContextSlot("combat")
        self._seed = seed
        self._count = 0
        self._rules = CombatBook()
        """Who may be named as opponents (the running fights are in the database)."""
        self._store = EngagementStore(
            "combat",
            busy_code=ErrorCode.CONFLICT,
            busy_text="character {character_id} is already fighting",
        )
        self._absences = Absences()

    async def setup(self, ctx: LobbyContext) -> None:
        self._slot.attach(ctx)
        register_handler(ctx, MessageType.COMBAT_START, self.on_start)
        register_handler(ctx, MessageType.COMBAT_ACTION, self.on_action)
        ctx.hub.on_join(self._on_join)
        ctx.hub.on_leave(self._on_presence_leave)

    async def close(self) -> None:
        self._slot.detach()

    async def in_combat(self, character_id: int) -> bool:
        async with self._slot.ctx.db.read() as db:
            return await self._store.of(db, character_id) is not None

    async def combat(self, combat_id: str) -> Combat | None:
        """The running combat ``combat_id`` as stored now, or None."""
        async with self._slot.ctx.db.read() as db:
            data = await self._store.read(db, combat_id)
        return None if data is None else Combat.from_dict(self._slot.ctx.world, data)

    async def combat_of(self, character_id: int) -> Combat | None:
        """``character_id``'s running combat as stored now, or None."""
        async with self._slot.ctx.db.read() as db:
            combat_id = await self._store.of(db, character_id)
            data = None if combat_id is None else await self._store.read(db, combat_id)
        return None if data is None else Combat.from_dict(self._slot.ctx.world, data)

    # -- WebSocket ------------------------------------------------------------------------

    async def on_start(self, conn: Connection, msg: CombatStartMessage) -> None:
        ctx = self._slot.ctx
        me = acting_character(conn)
        targets = self._rules.opponents(me.id, (c.id for c in msg.participants))
        row = await stored_character(ctx, me.id)
        fighters = []
        async with ctx.db.read() as db:
            taken = await self._store.busy(db, (me.id, *targets))
            if taken is not None:
                raise LobbyError(
                    f"character {taken} is already fighting",
                    code=ErrorCode.CONFLICT,
                    details={"character_id": taken},
                )
            for cid, side in ((me.id, "attackers"), *((t, "defenders") for t in targets)):
                char = await ctx.characters.get(cid)
                if (
                    char is None
                    or not online_anywhere(ctx.hub, cid)
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
        now = ctx.clock()
        combat = Combat.start(
            ctx.world,
            combat_id=f"c{secrets.token_hex(6)}",
            seed=seed,
            participants=fighters,
            now=now,
            location_id=row.location_id,
        )
        # the insert checks the fighters again: another start (on any process) may have
        # taken one of them during the awaits above
        async with ctx.db.write() as db:
            await self._store.insert(
                db, combat.combat_id, (f.character_id for f in fighters), combat.to_dict(), now
            )
        self._count += 1
        self._send_all(combat, [combat_start_message(combat, initiator_id=me.id)])
        ack(conn, msg.message_id, CombatStartAck(combat_id=combat.combat_id, seed=seed))

    async def on_action(self, conn: Connection, msg: CombatActionMessage) -> None:
        acting_character(conn, claimed=msg.actor_id, field="actor_id")
        combat, result = await self._act(conn, msg)
        self._send_all(combat, combat_result_messages(combat, result))
        if result.ended:
            await self._ended(combat)
        ack(conn, msg.message_id, CombatActionAck(combat_id=combat.combat_id, round=combat.seq))

    # -- helpers --------------------------------------------------------------------------

    async def _act(self, conn: Connection, msg: CombatActionMessage) -> tuple[Combat, ActionResult]:
        """Consume the item (if any), resolve the action and store it all, atomically.

        One write transaction: an item no longer owned (traded away since the fight
        began) refuses the action with ``ITEM_NOT_OWNED``; any failure rolls the
        deletion back and leaves the stored combat as it was.
        """
        ctx = self._slot.ctx
        actor_id = acting_character(conn).id
        async with ctx.db.write() as db:
            held, combat = await self._hold(db, msg.combat_id)
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
            result = combat.act(
                actor_id,
                msg.action_type,
                now=ctx.clock(),
                target_id=msg.target_id,
                ability_name=msg.ability_name,
                item_id=msg.item_id,
            )
            await self._write_state(db, combat)
            await self._put(db, held, combat)
        return combat, result

    async def _hold(self, db: AsyncConnection, combat_id: str) -> tuple[Held, Combat]:
        held = await self._store.hold(db, combat_id)
        if held is None:
            raise LobbyError(
                "no such combat", code=ErrorCode.NOT_IN_COMBAT, details={"combat_id": combat_id}
            )
        return held, Combat.from_dict(self._slot.ctx.world, held.data)

    async def _put(self, db: AsyncConnection, held: Held, combat: Combat) -> None:
        """Store the combat; when it has ended, store the defeated as wounded and remove it."""
        if combat.ended:
            defeated = [f.character_id for f in combat.participants() if not f.alive]
            if defeated:
                await db.execute(
                    update(characters).where(characters.c.id.in_(defeated)).values(health=1)
                )
            await self._store.drop(db, held)
        else:
            held.data = combat.to_dict()
            await self._store.save(db, held, self._slot.ctx.clock())

    @staticmethod
    async def _write_state(db: AsyncConnection, combat: Combat) -> None:
        for f in combat.participants():
            await db.execute(
                update(characters)
                .where(characters.c.id == f.character_id)
                .values(health=f.health, mana=f.mana)
            )

    async def _ended(self, combat: Combat) -> None:
        """Tell everyone how the (stored, removed) combat ended."""
        ctx = self._slot.ctx
        for f in combat.participants():
            ctx.hub.send_to_character(f.character_id, combat_end_message(combat, f.character_id))
        await push_character_updates(ctx, [f.character_id for f in combat.participants()])
        log.info("combat %s ended (%s)", combat.combat_id, combat.end.reason if combat.end else "")

    def _send_all(self, combat: Combat, messages: list[Any]) -> None:
        hub = self._slot.ctx.hub
        for f in combat.participants():
            for m in messages:
                hub.send_to_character(f.character_id, m.model_copy())

    async def _withdraw(self, character_id: int) -> None:
        """Take ``character_id`` out of its running combat (a flight without a roll)."""
        ctx = self._slot.ctx
        if not await self.in_combat(character_id):  # most who leave are not fighting
            return
        async with ctx.db.write() as db:
            combat_id = await self._store.of(db, character_id)
            if combat_id is None:
                return
            held, combat = await self._hold(db, combat_id)
            try:
                result = combat.withdraw(character_id, now=ctx.clock())
            except LobbyError:  # already out of it (fled)
                return
            await self._write_state(db, combat)
            await self._put(db, held, combat)
        self._send_all(combat, [combat_state_message(combat)])
        if result.ended:
            await self._ended(combat)

    # -- hooks ----------------------------------------------------------------------------

    async def maintain(self) -> None:
        """Withdraw the fighters gone for good (their lobby process died and they did not
        come back within ``reconnect_grace``)."""
        ctx = self._slot.current
        if ctx is None:
            return
        async with ctx.db.read() as db:
            running = [Combat.from_dict(ctx.world, data) for _, data in await self._store.all(db)]
        engaged = [f.character_id for c in running for f in c.participants() if f.active]
        gone = self._absences.gone(
            engaged,
            present=lambda cid: present_anywhere(ctx.hub, cid),
            now=ctx.clock(),
            grace=ctx.settings.reconnect_grace,
        )
        for cid in sorted(gone):
            log.info("character %d is gone; withdrawn from its combat", cid)
            await self._withdraw(cid)

    async def _on_join(self, presence: Presence) -> None:
        """A fighter (back, maybe on another process) is shown its running fight."""
        if presence.character is None or self._slot.current is None:
            return
        combat = await self.combat_of(presence.character.id)
        if combat is not None:
            self._slot.ctx.hub.send_to_session(presence.session_id, combat_state_message(combat))

    async def _on_presence_leave(self, presence: Presence) -> None:
        if presence.character is None or self._slot.current is None:
            return
        await self._withdraw(presence.character.id)
