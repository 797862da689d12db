"""``kill -9`` a real ``python -m lobby`` three times under trades; nothing acknowledged is lost.

Eight players trade in four pairs (items and gold both ways) as fast as the lobby goes.
After a few acknowledged trades in a round the lobby is killed with SIGKILL while the
other pairs are mid-trade, then restarted on the same data directory; the players
reconnect with their sessions. After each restart the item count and the gold total of
the players are what they were at the start. At the end, from the SQLite file itself:

* every trade a player was told completed (``trade_complete`` with ``success``) is
  recorded, exactly once;
* every item exists once and belongs to a player, the gold total is unchanged and no
  balance is negative;
* replaying the recorded trades on the starting state gives exactly the final state
  (each trade moved all of its items and gold or nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from tests.lobby.lobby_process import LobbyProcess, start_lobby
from tests.lobby.services.conftest import new_player
from tests.lobby.services.ledger import replay_trades
from tests.lobby.services.players import GamePlayer, Refused

PLAYERS = 8
KILLS = 3
ACKED_PER_ROUND = 6
"""Acknowledged trades in a round before the kill (others are in flight by then)."""
SEED = 20261204

GAME_ENV = {
    "SHARDS_WS_MESSAGE_RATE": "10000",
    "SHARDS_WS_MESSAGE_BURST": "10000",
    "SHARDS_RECONNECT_GRACE": "0",
    "SHARDS_SESSION_TTL": "10000000",
    "SHARDS_WS_IDLE_TIMEOUT": "10000000",
}
_LOST = (ConnectionError, aiohttp.ClientError, TimeoutError, Refused)


async def trade(a: GamePlayer, b: GamePlayer, rng: random.Random) -> str | None:
    """One complete exchange; its trade id if both were told it completed."""
    tid = str((await a.request("trade_request", target_id=b.id))["details"]["trade_id"])
    await b.next("trade_request", trade_id=tid)
    await b.request("trade_accept", trade_id=tid)
    offers: list[dict[str, Any]] = []
    for p in (a, b):
        status, inv = await p.rest("GET", "/api/inventory")
        assert status == 200, inv
        mine = [i["item_id"] for i in inv["items"]]
        picked = rng.sample(mine, k=min(len(mine), rng.randint(0, 2)))
        gold = rng.randint(0, min(inv["gold"], 30))
        offers.append(
            {"character_id": p.id, "items": [{"item_id": i} for i in picked], "gold": gold}
        )
    if not any(o["items"] or o["gold"] for o in offers):  # an empty exchange is refused
        return None
    for p, mine in zip((a, b), offers, strict=True):
        await p.request("trade_update", trade_id=tid, items=mine["items"], gold=mine["gold"])
    for p, mine in zip((a, b), offers, strict=True):
        await p.request(
            "trade_update",
            trade_id=tid,
            items=mine["items"],
            gold=mine["gold"],
            confirmed=True,
            offers=offers,
        )
    results = [await p.next("trade_complete", trade_id=tid) for p in (a, b)]
    return tid if all(r["success"] for r in results) else None


async def pair_loop(
    a: GamePlayer, b: GamePlayer, rng: random.Random, acked: list[str], enough: asyncio.Event
) -> None:
    """Trade until the lobby goes away."""
    with contextlib.suppress(*_LOST):
        while True:
            tid = await trade(a, b, rng)
            if tid is not None:
                acked.append(tid)
                if len(acked) % ACKED_PER_ROUND == 0:
                    enough.set()


async def totals(players: list[GamePlayer]) -> tuple[int, int]:
    items = gold = 0
    for p in players:
        status, inv = await p.rest("GET", "/api/inventory")
        assert status == 200, inv
        items += len(inv["items"])
        gold += inv["gold"]
    return items, gold


def read_db(path: Path) -> tuple[dict[int, int], dict[int, int], list[Any]]:
    """Item owners, gold by character, and the trade records, from the database file."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        owners = dict(db.execute("SELECT id, owner_id FROM items"))
        gold = dict(db.execute("SELECT id, gold FROM characters"))
        records = db.execute("SELECT trade_id, exchange FROM trades ORDER BY id").fetchall()
    return owners, gold, records


async def test_kill_9_under_trades_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    log = tmp_path / "lobby.log"
    rng = random.Random(SEED)
    lobby: LobbyProcess = await start_lobby(data, log=log, **GAME_ENV)
    acked: list[str] = []
    try:
        async with aiohttp.ClientSession() as http:
            players = [await new_player(lobby.url, http) for _ in range(PLAYERS)]
            ids = [p.id for p in players]
            owners0, gold0, _ = await asyncio.to_thread(read_db, data / "lobby.sqlite3")
            start = await totals(players)
            assert start == (len(owners0), sum(gold0.values()))
            for _ in range(KILLS):
                enough = asyncio.Event()
                order = players[:]
                rng.shuffle(order)
                loops = [
                    asyncio.create_task(
                        pair_loop(
                            order[i], order[i + 1], random.Random(rng.random()), acked, enough
                        )
                    )
                    for i in range(0, PLAYERS, 2)
                ]
                before = len(acked)
                await asyncio.wait_for(enough.wait(), 60)
                await lobby.kill()  # SIGKILL, trades in flight
                await asyncio.wait_for(asyncio.gather(*loops), 60)
                assert len(acked) > before
                for p in players:
                    await p.disconnect()
                lobby = await start_lobby(data, log=log, **GAME_ENV)
                for p in players:
                    p.client.base = lobby.url
                    await p.connect()
                assert await totals(players) == start
            for p in players:
                await p.disconnect()
    finally:
        await lobby.kill()
    owners, gold, records = await asyncio.to_thread(read_db, data / "lobby.sqlite3")
    recorded = Counter(str(r[0]) for r in records)
    assert len(acked) >= KILLS * ACKED_PER_ROUND
    assert all(recorded[tid] == 1 for tid in acked), [t for t in acked if recorded[t] != 1]
    assert max(recorded.values()) == 1
    assert set(gold) == set(ids)  # the players are every character there is
    assert sorted(owners) == sorted(owners0) and set(owners.values()) <= set(ids)
    assert sum(gold.values()) == sum(gold0.values()) and min(gold.values()) >= 0
    assert replay_trades(owners0, gold0, (str(r[1]) for r in records)) == (owners, gold)
