"""Combat against races: an item traded away before its use, two fights started at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from lobby import MasterServer
from lobby.game.combat import Combat
from lobby.services.combat import CombatService
from lobby.storage import characters
from lobby.storage.game_schema import items
from protocol.errors import ErrorCode, LobbyError
from tests.lobby.services.conftest import MakePlayer
from tests.lobby.services.players import GamePlayer


def target(p: GamePlayer) -> dict[str, Any]:
    return {"id": p.id, "name": p.name, "health": 1, "max_health": 1}


async def _warrior_fights_mage(
    server: MasterServer, make_player: MakePlayer
) -> tuple[GamePlayer, GamePlayer, str, Combat]:
    """A Warrior (a) starts a fight with a Mage (b) at location 2: both, the fight's id, it."""
    a = await make_player(character_class="Warrior")
    b = await make_player(character_class="Mage", faction="Azure Syndicate")
    await a.request("move", to_location_id=2)
    await b.request("move", to_location_id=2)
    started = await a.request("combat_start", combat_id="x", participants=[target(b)])
    combat_id = str(started["details"]["combat_id"])
    return a, b, combat_id, await _stored_combat(server, combat_id)


async def _stored_combat(server: MasterServer, combat_id: str) -> Combat:
    combat = await server.ctx.services.require(CombatService).combat(combat_id)
    assert combat is not None
    return combat


async def _stored_health(server: MasterServer, character_id: int) -> int:
    async with server.ctx.db.read() as db:
        return int(
            (
                await db.execute(select(characters.c.health).where(characters.c.id == character_id))
            ).scalar_one()
        )


async def test_item_traded_away_mid_fight_cannot_be_used(
    server: MasterServer, make_player: MakePlayer, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, combat_id, combat = await _warrior_fights_mage(server, make_player)
    fighter = combat.participant(a.id)
    assert fighter is not None
    potion = next(i for i, t in fighter.items.items() if t == 1)  # loaded when the fight began
    # hurt a first, so a healing potion would show
    await b.request("combat_action", combat_id=combat_id, action_type="attack", target_id=a.id)
    combat = await _stored_combat(server, combat_id)
    fighter = combat.participant(a.id)
    assert fighter is not None
    health = fighter.health
    stored = await _stored_health(server, a.id)
    seq = combat.seq

    # a trade commits between the fight's view of the inventory and the use: just
    # before the next write transaction (the one that would store the use) begins
    real_write = server.ctx.db.write
    armed = True

    @asynccontextmanager
    async def write() -> AsyncIterator[AsyncConnection]:
        nonlocal armed
        if armed:
            armed = False
            async with real_write() as db:
                await db.execute(update(items).where(items.c.id == potion).values(owner_id=b.id))
        async with real_write() as db:
            yield db

    monkeypatch.setattr(server.ctx.db, "write", write)

    assert (
        await a.refused("combat_action", combat_id=combat_id, action_type="item", item_id=potion)
        == "item_not_owned"
    )
    async with server.ctx.db.read() as db:
        rows = (await db.execute(select(items.c.owner_id).where(items.c.id == potion))).all()
    assert not armed
    assert [r.owner_id for r in rows] == [b.id]
    after = await _stored_combat(server, combat_id)
    assert after.to_dict() == combat.to_dict()
    assert (after.participant(a.id) or fighter).health == health and after.seq == seq
    assert await _stored_health(server, a.id) == stored


async def test_two_fights_cannot_take_the_same_character(
    server: MasterServer, make_player: MakePlayer
) -> None:
    a = await make_player()
    b = await make_player()
    c = await make_player(faction="Azure Syndicate")
    for p in (a, b, c):
        await p.request("move", to_location_id=2)
    mids = await asyncio.gather(
        a.send("combat_start", combat_id="x", participants=[target(c)]),
        b.send("combat_start", combat_id="y", participants=[target(c)]),
    )
    replies = [await p.reply(mid) for p, mid in zip((a, b), mids, strict=True)]
    kinds = sorted(r["type"] for r in replies)
    assert kinds == ["ack", "error"], replies
    error = next(r for r in replies if r["type"] == "error")
    assert error["error_code"] == "conflict"
    service = server.ctx.services.require(CombatService)
    assert await service.in_combat(c.id)
    assert [await service.in_combat(p.id) for p in (a, b)].count(True) == 1


async def test_a_failed_store_rolls_the_item_use_back(
    server: MasterServer, make_player: MakePlayer, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, combat_id, combat = await _warrior_fights_mage(server, make_player)
    service = server.ctx.services.require(CombatService)
    await b.request("combat_action", combat_id=combat_id, action_type="attack", target_id=a.id)
    fighter = combat.participant(a.id)
    assert fighter is not None
    potion = next(i for i, t in fighter.items.items() if t == 1)
    before = (await _stored_combat(server, combat_id)).to_dict()

    async def broken(*_: Any) -> None:
        raise LobbyError("storage is down", code=ErrorCode.UNAVAILABLE)

    monkeypatch.setattr(service, "_write_state", broken)
    assert (
        await a.refused("combat_action", combat_id=combat_id, action_type="item", item_id=potion)
        == "unavailable"
    )
    assert (await _stored_combat(server, combat_id)).to_dict() == before
    async with server.ctx.db.read() as db:
        rows = (await db.execute(select(items.c.owner_id).where(items.c.id == potion))).all()
    assert [r.owner_id for r in rows] == [a.id]
    monkeypatch.undo()
    await a.request("combat_action", combat_id=combat_id, action_type="item", item_id=potion)
    async with server.ctx.db.read() as db:
        rows = (await db.execute(select(items.c.owner_id).where(items.c.id == potion))).all()
    assert rows == []
