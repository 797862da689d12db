"""Trading: the window rules, refusals, commit-time re-checks, disconnects, and a hammer test."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from sqlalchemy import select, update

from lobby import MasterServer
from lobby.services.trade import TradeService
from lobby.storage import characters
from lobby.storage.game_schema import items, trades
from tests.lobby.services.conftest import MakePlayer
from tests.lobby.services.ledger import replay_trades
from tests.lobby.services.players import GamePlayer
from tests.lobby.support import FakeClock


async def inventory(p: GamePlayer) -> dict[str, Any]:
    status, body = await p.rest("GET", "/api/inventory")
    assert status == 200, body
    return dict(body)


def offer(p: GamePlayer, item_ids: list[int], gold: int) -> dict[str, Any]:
    return {"character_id": p.id, "items": [{"item_id": i} for i in item_ids], "gold": gold}


async def open_trade(a: GamePlayer, b: GamePlayer) -> str:
    tid = str((await a.request("trade_request", target_id=b.id))["details"]["trade_id"])
    request = await b.next("trade_request", trade_id=tid)
    assert request["initiator_id"] == a.id and request["initiator_name"] == a.name
    await b.request("trade_accept", trade_id=tid)
    return tid


async def test_new_characters_get_the_starting_kit(
    server: MasterServer, make_player: MakePlayer
) -> None:
    p = await make_player()
    inv = await inventory(p)
    rules = server.ctx.world.rules
    assert inv["gold"] == rules.starting_gold
    assert sorted(i["template_id"] for i in inv["items"]) == sorted(rules.starting_inventory)
    assert len({i["item_id"] for i in inv["items"]}) == len(rules.starting_inventory)


async def test_trade_window_rules_and_a_completed_exchange(
    server: MasterServer, make_player: MakePlayer, game_clock: FakeClock
) -> None:
    a = await make_player()
    b = await make_player()
    c = await make_player()
    a_items = [i["item_id"] for i in (await inventory(a))["items"]]
    b_items = [i["item_id"] for i in (await inventory(b))["items"]]

    # a request nobody answers expires on the lobby's clock
    tid = str((await a.request("trade_request", target_id=b.id))["details"]["trade_id"])
    assert await c.refused("trade_request", target_id=a.id) == "trade_invalid"  # a is busy
    game_clock.advance(server.ctx.world.rules.trade_request_ttl_seconds)
    assert await b.refused("trade_accept", trade_id=tid) == "trade_invalid"
    done = await a.next("trade_complete", trade_id=tid)
    assert done["success"] is False and done["reason"] == "expired"

    tid = await open_trade(a, b)
    window = await a.next("trade_update", trade_id=tid)
    assert [o["character_id"] for o in window["offers"]] == [a.id, b.id]
    # refusals: someone else's item, more gold than owned, a stranger, a stack
    assert await a.refused("trade_update", trade_id=tid, items=[{"item_id": b_items[0]}]) == (
        "item_not_owned"
    )
    assert await a.refused("trade_update", trade_id=tid, gold=10_000) == "insufficient_gold"
    assert await c.refused("trade_update", trade_id=tid, gold=1) == "not_found"
    assert (
        await a.refused(
            "trade_update", trade_id=tid, items=[{"item_id": a_items[0], "quantity": 2}]
        )
        == "trade_invalid"
    )
    assert await a.refused("trade_update", trade_id=tid, confirmed=True) == "trade_invalid"

    await a.request("trade_update", trade_id=tid, items=[{"item_id": a_items[0]}], gold=10)

    def a_confirms(seen: list[dict[str, Any]]) -> dict[str, Any]:
        """a's offer (its first item and 10 gold), confirmed against the window ``seen``."""
        return {
            "trade_id": tid,
            "items": [{"item_id": a_items[0]}],
            "gold": 10,
            "confirmed": True,
            "offers": seen,
        }

    await b.request("trade_update", trade_id=tid, gold=25)
    seen = [offer(a, [a_items[0]], 10), offer(b, [], 25)]
    await a.request("trade_update", **a_confirms(seen))
    # b changes its offer: a's confirmation is cleared, a stale confirmation is refused
    await b.request("trade_update", trade_id=tid, gold=20)
    changed = await a.next(
        "trade_update",
        trade_id=tid,
        offers=[
            {
                **offer(a, [a_items[0]], 10),
                "items": [{"item_id": a_items[0], "name": "Minor Healing Potion", "quantity": 1}],
                "confirmed": False,
            },
            {**offer(b, [], 20), "confirmed": False},
        ],
    )
    assert changed
    assert await a.refused("trade_update", **a_confirms(seen)) == "trade_invalid"
    seen = [offer(a, [a_items[0]], 10), offer(b, [], 20)]
    await a.request("trade_update", **a_confirms(seen))
    await b.request("trade_update", trade_id=tid, gold=20, confirmed=True, offers=seen)
    for p in (a, b):
        complete = await p.next("trade_complete", trade_id=tid)
        assert complete["success"] is True
    inv_a, inv_b = await inventory(a), await inventory(b)
    assert inv_a["gold"] == 100 - 10 + 20 and inv_b["gold"] == 100 + 10 - 20
    assert (await a.next("character_update", character_id=a.id))["gold"] == inv_a["gold"]
    assert a_items[0] in [i["item_id"] for i in inv_b["items"]]
    assert a_items[0] not in [i["item_id"] for i in inv_a["items"]]

    # the item a no longer owns cannot be offered again
    tid = await open_trade(a, c)
    assert await a.refused("trade_update", trade_id=tid, items=[{"item_id": a_items[0]}]) == (
        "item_not_owned"
    )
    await c.request("trade_decline", trade_id=tid)
    declined = await a.next("trade_decline", trade_id=tid)
    assert declined["character_id"] == c.id
    assert (await a.next("trade_complete", trade_id=tid))["success"] is False


async def test_the_commit_rechecks_ownership_and_nothing_moves(
    server: MasterServer, make_player: MakePlayer
) -> None:
    a = await make_player()
    b = await make_player()
    c = await make_player()
    item = (await inventory(a))["items"][0]["item_id"]
    tid = await open_trade(a, b)
    await a.request("trade_update", trade_id=tid, items=[{"item_id": item}])
    await b.request("trade_update", trade_id=tid, gold=50)
    # the item changes hands behind the trade's back (another lobby process, say)
    async with server.ctx.db.write() as db:
        await db.execute(update(items).where(items.c.id == item).values(owner_id=c.id))
    await a.request("trade_update", trade_id=tid, items=[{"item_id": item}], confirmed=True)
    await b.request("trade_update", trade_id=tid, gold=50, confirmed=True)
    result = await b.next("trade_complete", trade_id=tid)
    assert result["success"] is False and "no longer owns" in result["reason"]
    assert (await inventory(b))["gold"] == 100 and (await inventory(a))["gold"] == 100
    assert item in [i["item_id"] for i in (await inventory(c))["items"]]


async def test_a_disconnect_cancels_the_trade(
    server: MasterServer, make_player: MakePlayer
) -> None:
    a = await make_player()
    b = await make_player()
    tid = await open_trade(a, b)
    await b.request("trade_update", trade_id=tid, gold=5)
    await a.disconnect()
    result = await b.next("trade_complete", trade_id=tid)
    assert result["success"] is False and result["reason"] == "disconnected"
    await a.connect()
    tid2 = await open_trade(b, a)  # both are free again
    assert tid2 != tid


async def test_deleting_a_character_ends_its_trade_and_frees_the_partner(
    server: MasterServer, make_player: MakePlayer
) -> None:
    a = await make_player()
    b = await make_player()
    c = await make_player()
    tid = await open_trade(a, b)
    await b.request("trade_update", trade_id=tid, gold=5)
    status, body = await a.rest("DELETE", f"/api/characters/{a.id}")
    assert status == 200, body
    result = await b.next("trade_complete", trade_id=tid)
    assert result["success"] is False
    await open_trade(b, c)  # b is free again
    assert (await inventory(b))["gold"] == 100


# -- the hammer ---------------------------------------------------------------------------

PLAYERS = 12
ROUNDS = 8
STEP_WAIT = 10.0


async def _trade(a: GamePlayer, b: GamePlayer, rng: random.Random, all_items: list[int]) -> str:
    """One trade with a random disconnect point; returns what happened."""
    drop_at = rng.choice([None, None, None, 0, 1, 2, 3, 4])
    dropper = rng.choice([a, b])
    stayer = b if dropper is a else a

    async def drop() -> str:
        await dropper.disconnect()
        # whatever the drop interrupted, the one who stayed hears how the trade ended
        result = await stayer.next("trade_complete", trade_id=tid, wait=STEP_WAIT)
        return "dropped" if not result["success"] else "completed"

    tid = ""
    answer = await a.reply(await a.send("trade_request", target_id=b.id), wait=STEP_WAIT)
    if answer["type"] == "error":
        return "refused"
    tid = answer["details"]["trade_id"]
    if drop_at == 0:
        return await drop()
    await b.next("trade_request", trade_id=tid, wait=STEP_WAIT)
    await b.request("trade_accept", trade_id=tid)
    if drop_at == 1:
        return await drop()
    chosen: dict[int, tuple[list[int], int]] = {}
    for p in (a, b):
        inv = await inventory(p)
        mine = [i["item_id"] for i in inv["items"]]
        if rng.random() < 0.3:  # try something we do not own first
            foreign = [i for i in all_items if i not in mine]
            code = await p.refused(
                "trade_update", trade_id=tid, items=[{"item_id": rng.choice(foreign)}]
            )
            assert code == "item_not_owned"
        picked = rng.sample(mine, k=min(len(mine), rng.randint(0, 2)))
        gold = rng.randint(0, min(inv["gold"], 40))
        chosen[p.id] = (picked, gold)
        await p.request(
            "trade_update", trade_id=tid, items=[{"item_id": i} for i in picked], gold=gold
        )
    if drop_at == 2:
        return await drop()
    seen = [offer(p, *chosen[p.id]) for p in (a, b)]
    for n, p in enumerate((a, b)):
        picked, gold = chosen[p.id]
        mid = await p.send(
            "trade_update",
            trade_id=tid,
            items=[{"item_id": i} for i in picked],
            gold=gold,
            confirmed=True,
            offers=seen,
        )
        if n == 1 and drop_at == 4 and p is dropper:
            return await drop()  # gone right after the final confirmation
        reply = await p.reply(mid, wait=STEP_WAIT)
        if reply["type"] == "error":  # e.g. nothing offered at all
            await p.request("trade_decline", trade_id=tid)
            return "declined"
        if n == 0 and drop_at == 3:
            return await drop()
    result = await stayer.next("trade_complete", trade_id=tid, wait=STEP_WAIT)
    return "completed" if result["success"] else "failed"


async def _snapshot(server: MasterServer, ids: list[int]) -> tuple[dict[int, int], dict[int, int]]:
    async with server.ctx.db.read() as db:
        owners = {
            int(r[0]): int(r[1])
            for r in await db.execute(
                select(items.c.id, items.c.owner_id).where(items.c.owner_id.in_(ids))
            )
        }
        gold = {
            int(r[0]): int(r[1])
            for r in await db.execute(
                select(characters.c.id, characters.c.gold).where(characters.c.id.in_(ids))
            )
        }
    return owners, gold


async def test_trade_hammer_keeps_every_item_and_all_gold(
    server: MasterServer, make_player: MakePlayer
) -> None:
    await trade_hammer(server, make_player)


async def trade_hammer(server: MasterServer, make_player: MakePlayer) -> None:
    """Many concurrent trades with random disconnects; every item and all gold survive."""
    rng = random.Random(20261126)
    players = [await make_player() for _ in range(PLAYERS)]
    ids = [p.id for p in players]
    owners0, gold0 = await _snapshot(server, ids)
    all_items = sorted(owners0)
    outcomes: list[str] = []
    for _ in range(ROUNDS):
        order = players[:]
        rng.shuffle(order)
        pairs = [(order[i], order[i + 1]) for i in range(0, len(order), 2)]
        seeds = [rng.randrange(2**32) for _ in pairs]
        results = await asyncio.wait_for(
            asyncio.gather(
                *(
                    _trade(a, b, random.Random(s), all_items)
                    for (a, b), s in zip(pairs, seeds, strict=True)
                )
            ),
            60,
        )
        outcomes.extend(results)
        for p in players:
            if p.ws is None:
                await p.connect()
            elif p.box is not None:
                p.box.items.clear()
    assert {"completed", "dropped"} <= set(outcomes), outcomes

    owners, gold = await _snapshot(server, ids)
    assert sorted(owners) == all_items  # every item still exists, exactly once
    assert set(owners.values()) <= set(ids)
    assert sum(gold.values()) == sum(gold0.values())
    assert all(g >= 0 for g in gold.values())
    # replaying the recorded exchanges on the starting state gives exactly the final state
    async with server.ctx.db.read() as db:
        records = (
            await db.execute(
                select(trades).where(trades.c.initiator_id.in_(ids)).order_by(trades.c.id)
            )
        ).all()
        count = len(records)
    # every trade the players saw succeed is recorded (a drop after confirming may add more)
    assert count >= outcomes.count("completed") > 0
    assert replay_trades(owners0, gold0, (rec.exchange for rec in records)) == (owners, gold)
    trades_service = server.ctx.services.require(TradeService)
    assert [await trades_service.trade_of(i) for i in ids] == [None] * len(ids)
