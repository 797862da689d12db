"""The same item in two trades at once (two lobby processes' worth of state on one SQLite file).

Inside one lobby a character has one unfinished trade, so the only way one item
can be in two trades is through two lobbies sharing the database. Both trades
are confirmed at the same moment: exactly one exchange happens, the other is
cancelled by the commit-time checks, and nothing is duplicated or lost.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, select

from lobby import MasterServer
from lobby.storage import characters
from lobby.storage.game_schema import items
from tests.lobby.services.conftest import game_settings, new_player
from tests.lobby.services.players import GamePlayer
from tests.lobby.support import ApiClient, FakeClock


async def test_one_item_in_two_concurrent_trades_moves_once(
    tmp_path: Path, web: aiohttp.ClientSession
) -> None:
    # one SQLite file, two data directories (a data directory is locked by one lobby)
    one = game_settings(tmp_path / "one")
    two = game_settings(tmp_path / "two", database_url=one.resolved_database_url)
    await same_item_in_two_lobbies(one, two, web)


async def same_item_in_two_lobbies(
    settings_one: Any, settings_two: Any, web: aiohttp.ClientSession
) -> None:
    """Two lobbies on one database; the seller's item is in a trade on each."""
    clock = FakeClock(1_800_000_000.0)
    async with (
        MasterServer(settings=settings_one, clock=clock) as one,
        MasterServer(settings=settings_two, clock=clock) as two,
    ):
        seller = await new_player(one.url, web, name="Seller")
        buyer_one = await new_player(one.url, web, name="BuyerOne")
        buyer_two = await new_player(two.url, web, name="BuyerTwo")
        status, inv = await seller.rest("GET", "/api/inventory")
        assert status == 200, inv
        item = inv["items"][0]["item_id"]
        # a second session of the seller, on the other lobby, plays the same character (the
        # first lobby's hub still has it selected: two processes' worth of state)
        client = ApiClient(two.url, web)
        await client.login(seller.username)
        selected = await client.select(seller.id)
        seller_two = await GamePlayer(client, selected["character"], selected).connect()

        tids = []
        for s, buyer in ((seller, buyer_one), (seller_two, buyer_two)):
            tid = (await s.request("trade_request", target_id=buyer.id))["details"]["trade_id"]
            await buyer.request("trade_accept", trade_id=tid)
            await s.request("trade_update", trade_id=tid, items=[{"item_id": item}])
            await buyer.request("trade_update", trade_id=tid, gold=30)
            await s.request("trade_update", trade_id=tid, items=[{"item_id": item}], confirmed=True)
            tids.append(tid)

        async def confirm(buyer: GamePlayer, tid: str) -> bool:
            await buyer.send("trade_update", trade_id=tid, gold=30, confirmed=True)
            return bool((await buyer.next("trade_complete", trade_id=tid))["success"])

        outcomes = await asyncio.gather(confirm(buyer_one, tids[0]), confirm(buyer_two, tids[1]))
        assert sorted(outcomes) == [False, True]
        winner = buyer_one if outcomes[0] else buyer_two
        async with one.ctx.db.read() as db:
            owner = (
                await db.execute(select(items.c.owner_id).where(items.c.id == item))
            ).scalar_one()
            ids = [seller.id, buyer_one.id, buyer_two.id]
            total_items = (
                await db.execute(
                    select(func.count()).select_from(items).where(items.c.owner_id.in_(ids))
                )
            ).scalar_one()
            rows = await db.execute(
                select(characters.c.id, characters.c.gold).where(characters.c.id.in_(ids))
            )
            gold = {int(r[0]): int(r[1]) for r in rows}
        assert owner == winner.id
        assert total_items == 3 * len(one.ctx.world.rules.starting_inventory)  # 3 characters
        assert gold[seller.id] == 130 and gold[winner.id] == 70
        assert sum(gold.values()) == 3 * 100
        for p in (seller, seller_two, buyer_one, buyer_two):
            await p.disconnect()
