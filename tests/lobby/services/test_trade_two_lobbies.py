"""One trade, two lobby processes' worth of state on one database (SQLite file, PostgreSQL).

A trade lives in the database, not in a lobby: the same character, playing on a
second lobby, cannot start a second trade (its item cannot be in two trades at
once), and can carry on the one it started on the first lobby. The exchange
happens once, and nothing is duplicated or lost.
"""

from __future__ import annotations

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


async def test_a_trade_begun_on_one_lobby_is_carried_on_from_the_other(
    tmp_path: Path, web: aiohttp.ClientSession
) -> None:
    # one SQLite file, two data directories (a data directory is locked by one lobby)
    one = game_settings(tmp_path / "one")
    two = game_settings(tmp_path / "two", database_url=one.resolved_database_url)
    await one_trade_in_two_lobbies(one, two, web)


async def one_trade_in_two_lobbies(
    settings_one: Any, settings_two: Any, web: aiohttp.ClientSession
) -> None:
    """Two lobbies on one database; the seller trades on one and confirms on the other."""
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

        tid = (await seller.request("trade_request", target_id=buyer_one.id))["details"]["trade_id"]
        await buyer_one.request("trade_accept", trade_id=tid)
        await seller.request("trade_update", trade_id=tid, items=[{"item_id": item}])
        await buyer_one.request("trade_update", trade_id=tid, gold=30)
        # the seller, on the other lobby, is busy trading: its item cannot be offered twice
        assert await seller_two.refused("trade_request", target_id=buyer_two.id) == (
            "trade_invalid"
        )
        # ... but it confirms the trade from there, and the buyer's confirmation on the
        # first lobby completes it
        await seller_two.request(
            "trade_update", trade_id=tid, items=[{"item_id": item}], confirmed=True
        )
        await buyer_one.send("trade_update", trade_id=tid, gold=30, confirmed=True)
        assert (await buyer_one.next("trade_complete", trade_id=tid))["success"] is True
        winner = buyer_one
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
