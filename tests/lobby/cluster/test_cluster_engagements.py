"""Trades and fights between players on different lobby processes, exactly as on one."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.lobby.cluster.conftest import Cluster, spread
from tests.lobby.cluster.engaging import (
    answer,
    fight_to_the_end,
    foe,
    inventory,
    open_trade,
    refused,
    request,
    totals,
)

pytestmark = pytest.mark.cluster


async def test_a_trade_between_two_processes_and_a_race_for_its_partner(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    factions = ("Crimson Covenant", "Azure Syndicate", "Verdant Pact")
    async with spread(http, cluster, *factions, prefix="xtr") as (a, b, c):
        before = await totals([a, b, c])
        # c (lobby2) and a (lobby0) ask b (lobby1) at the same moment: one trade wins
        await asyncio.gather(
            a.send("trade_request", message_id="ra", target_id=b.id),
            c.send("trade_request", message_id="rc", target_id=b.id),
        )
        answers = {p.id: await answer(p, ref) for p, ref in ((a, "ra"), (c, "rc"))}
        assert sorted(m["type"] for m in answers.values()) == ["ack", "error"], answers
        loser = a if answers[a.id]["type"] == "error" else c
        assert answers[loser.id]["error_code"] == "trade_invalid"
        winner = c if loser is a else a
        tid = answers[winner.id]["details"]["trade_id"]
        await request(winner, "trade_decline", trade_id=tid, reason="let a go first")
        await b.seen_or_next(lambda m: m.get("type") == "trade_complete" and m["trade_id"] == tid)

        tid = await open_trade(a, b)
        item = (await inventory(a))["items"][0]["item_id"]
        await request(a, "trade_update", trade_id=tid, items=[{"item_id": item}])
        await request(b, "trade_update", trade_id=tid, gold=25)
        # each sees the other's offer, whichever process made it
        window = await a.seen_or_next(
            lambda m: (
                m.get("type") == "trade_update"
                and any(o["character_id"] == b.id and o["gold"] == 25 for o in m["offers"])
            )
        )
        assert window["trade_id"] == tid
        seen = [
            {"character_id": a.id, "items": [{"item_id": item}], "gold": 0},
            {"character_id": b.id, "items": [], "gold": 25},
        ]
        # both confirm at the same moment, each on its own process: one exchange
        await asyncio.gather(
            a.send(
                "trade_update",
                message_id="ca",
                trade_id=tid,
                items=[{"item_id": item}],
                confirmed=True,
                offers=seen,
            ),
            b.send(
                "trade_update", message_id="cb", trade_id=tid, gold=25, confirmed=True, offers=seen
            ),
        )
        for p, ref in ((a, "ca"), (b, "cb")):
            assert (await answer(p, ref))["type"] == "ack"
        for p in (a, b):
            done = await p.seen_or_next(
                lambda m: m.get("type") == "trade_complete" and m["trade_id"] == tid
            )
            assert done["success"] is True, done
            # the CHARACTER_UPDATE with the new gold reaches each on its process
            gold = 75 if p is b else 125
            await p.seen_or_next(
                lambda m, gold=gold: m.get("type") == "character_update" and m["gold"] == gold
            )
        assert item in [i["item_id"] for i in (await inventory(b))["items"]]
        assert await totals([a, b, c]) == before


async def test_a_fight_between_two_processes(cluster: Cluster, http: aiohttp.ClientSession) -> None:
    factions = ("Crimson Covenant", "Azure Syndicate")
    async with spread(http, cluster, *factions, prefix="xfi") as (a, b):
        for p in (a, b):
            await request(p, "move", to_location_id=2)
        started = await request(a, "combat_start", combat_id="x", participants=[foe(b)])
        combat_id = started["details"]["combat_id"]
        began = await b.seen_or_next(lambda m: m.get("type") == "combat_start")
        assert began["combat_id"] == combat_id and began["initiator_id"] == a.id
        # b is in the fight, which its process knows: it cannot walk away
        assert (await refused(b, "move", to_location_id=1))["error_code"] == "invalid_move"
        await request(a, "combat_action", combat_id=combat_id, action_type="attack", target_id=b.id)
        hit = await b.seen_or_next(lambda m: m.get("type") == "combat_damage")
        assert hit["source_id"] == a.id and hit["target_id"] == b.id
        await request(b, "combat_action", combat_id=combat_id, action_type="attack", target_id=a.id)
        hit = await a.seen_or_next(
            lambda m: m.get("type") == "combat_damage" and m["source_id"] == b.id
        )
        assert hit["target_id"] == a.id
        await fight_to_the_end(b, combat_id)
        for p in (a, b):
            end = await p.seen_or_next(lambda m: m.get("type") == "combat_end")
            assert end["combat_id"] == combat_id
            assert end["result"] == ("victory" if p is a else "fled")
        # both are free again: a new fight starts
        again = await request(a, "combat_start", combat_id="y", participants=[foe(b)])
        assert again["details"]["combat_id"] != combat_id
