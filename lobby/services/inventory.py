"""Inventories: unique item instances owned by characters, starting kit, ``GET /api/inventory``.

Every item is one ``items`` row with a unique id and exactly one owner
(``owner_id``). A new character receives ``rules.starting_inventory`` (item
template ids, one instance each) inside the transaction that creates it (a
``create_hooks`` entry of :class:`~lobby.characters.CharacterService`); its gold
is ``rules.starting_gold`` (set by the core). Deleting a character deletes its
items (foreign key cascade).

``GET /api/inventory``: the selected character's gold and items.
"""

from __future__ import annotations

import logging

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from lobby.characters import Character
from lobby.context import ContextSlot, LobbyContext
from lobby.http.api import ApiRequest
from lobby.storage import characters
from lobby.storage.game_schema import items
from protocol.errors import ErrorCode, LobbyError
from protocol.rest import InventoryOut, ItemOut

__all__ = ["InventoryService", "consume_item", "gold_of", "items_of"]

log = logging.getLogger("lobby.inventory")


async def items_of(db: AsyncConnection, character_id: int) -> dict[int, int]:
    """``{item_id: template_id}`` of everything ``character_id`` owns."""
    rows = await db.execute(
        select(items.c.id, items.c.template_id)
        .where(items.c.owner_id == character_id)
        .order_by(items.c.id)
    )
    return {int(r[0]): int(r[1]) for r in rows}


async def gold_of(db: AsyncConnection, character_id: int) -> int:
    row = (
        await db.execute(select(characters.c.gold).where(characters.c.id == character_id))
    ).first()
    return int(row[0]) if row is not None else 0


async def consume_item(db: AsyncConnection, character_id: int, item_id: int) -> bool:
    """Delete ``item_id`` if ``character_id`` still owns it; True if it did."""
    result = await db.execute(
        delete(items).where(items.c.id == item_id, items.c.owner_id == character_id)
    )
    return result.rowcount == 1


class InventoryService:
    """Starting inventory for new characters and the inventory endpoint."""

    name = "inventory"

    def __init__(self) -> None:
        self._slot = ContextSlot("the inventory service")

    async def setup(self, ctx: LobbyContext) -> None:
        self._slot.attach(ctx)
        ctx.characters.create_hooks.append(self._grant_starting_kit)
        ctx.api.route(
            "GET",
            "/api/inventory",
            response_model=InventoryOut,
            summary="The selected character's gold and items",
            tags=("inventory",),
            errors=(403,),
        )(self.get_inventory)

    async def close(self) -> None:
        ctx = self._slot.detach()
        if ctx is not None and self._grant_starting_kit in ctx.characters.create_hooks:
            ctx.characters.create_hooks.remove(self._grant_starting_kit)

    async def _grant_starting_kit(self, db: AsyncConnection, character: Character) -> None:
        ctx = self._slot.ctx
        kit = ctx.world.rules.starting_inventory
        if kit:
            now = ctx.clock()
            await db.execute(
                insert(items),
                [{"template_id": t, "owner_id": character.id, "created_at": now} for t in kit],
            )

    async def get_inventory(self, req: ApiRequest) -> InventoryOut:
        session = req.require_session()
        if session.character_id is None:
            raise LobbyError("select a character first", code=ErrorCode.NO_CHARACTER)
        ctx = req.ctx
        character = await ctx.characters.get_owned(session.account_id, session.character_id)
        async with ctx.db.read() as db:
            owned = await items_of(db, character.id)
            gold = await gold_of(db, character.id)
        out = []
        for item_id, template_id in owned.items():
            template = ctx.world.item(template_id)
            out.append(
                ItemOut(
                    item_id=item_id,
                    template_id=template_id,
                    name=template.name if template else f"item {template_id}",
                    kind=template.kind if template else "unknown",
                )
            )
        return InventoryOut(character_id=character.id, gold=gold, items=out)
