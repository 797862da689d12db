"""``kill -9`` of the process that started a trade and a fight: both go on elsewhere.

A trade and a fight live in the database, so the process that started them takes
nothing with it. Its players reconnect through HAProxy to another process, are
shown the trade window / the fight as they stand, and finish them there with
their partners; a player who does not come back leaves his trade after the
reconnect grace, and his partner is told. Nothing is duplicated or lost.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.lobby.cluster.conftest import Cluster, Player, join, running_cluster, unique
from tests.lobby.cluster.engaging import (
    answer,
    fight_to_the_end,
    foe,
    inventory,
    open_trade,
    request,
    totals,
)
from tests.lobby.support import aiohttp_inbox, ws_url

pytestmark = pytest.mark.cluster

GRACE = "8"
"""The cluster's reconnect grace (s): how long an absent player keeps his trade."""


@pytest.fixture(scope="module")
def cluster(postgres_url: str) -> Iterator[Cluster]:
    """A cluster of this module's own: its first process is killed."""
    with running_cluster(postgres_url, "shards-kill-", SHARDS_RECONNECT_GRACE=GRACE) as running:
        yield running


def trade_message(kind: str, tid: str) -> Any:
    return lambda m: m.get("type") == kind and m.get("trade_id") == tid


async def back_through_haproxy(http: aiohttp.ClientSession, cluster: Cluster, p: Player) -> None:
    """``p``'s session reconnects through the balancer (to a live process) and the REST
    calls go there too."""
    p.api.base = cluster.proxy.url
    p.ws = await http.ws_connect(ws_url(cluster.proxy.url), headers=p.api.headers())
    p.inbox = aiohttp_inbox(p.ws)


async def test_kill_9_mid_trade_and_mid_fight(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    victim, other = cluster.lobbies[0], cluster.lobbies[1]
    seller = await join(http, victim.url, unique("ks"), "Azure Syndicate")
    buyer = await join(http, victim.url, unique("kb"), "Azure Syndicate")
    attacker = await join(http, victim.url, unique("ka"), "Crimson Covenant")
    defender = await join(http, other.url, unique("kd"), "Verdant Pact")
    deserter = await join(http, victim.url, unique("kx"), "Crimson Covenant")
    partner = await join(http, other.url, unique("kp"), "Crimson Covenant")
    everyone = [seller, buyer, attacker, defender, deserter, partner]
    try:
        before = await totals(everyone)
        # a trade between two players of the victim, the seller's side confirmed
        tid = await open_trade(seller, buyer)
        item = (await inventory(seller))["items"][0]["item_id"]
        await request(seller, "trade_update", trade_id=tid, items=[{"item_id": item}])
        await request(buyer, "trade_update", trade_id=tid, gold=20)
        seen = [
            {"character_id": seller.id, "items": [{"item_id": item}], "gold": 0},
            {"character_id": buyer.id, "items": [], "gold": 20},
        ]
        await request(
            seller,
            "trade_update",
            trade_id=tid,
            items=[{"item_id": item}],
            confirmed=True,
            offers=seen,
        )
        # a fight started on the victim against a player of another process
        for p in (attacker, defender):
            await request(p, "move", to_location_id=2)
        started = await request(
            attacker, "combat_start", combat_id="k", participants=[foe(defender)]
        )
        cid = started["details"]["combat_id"]
        await request(
            attacker, "combat_action", combat_id=cid, action_type="attack", target_id=defender.id
        )
        # a trade and a fight whose player on the victim will never come back
        lost = await open_trade(deserter, partner)
        await request(partner, "trade_update", trade_id=lost, gold=5)
        for p in (deserter, partner):
            await request(p, "move", to_location_id=2)
        duel = await request(partner, "combat_start", combat_id="d", participants=[foe(deserter)])

        victim.kill()
        for p in (seller, buyer, attacker):
            await back_through_haproxy(http, cluster, p)
        # each is shown what it was doing, as it stands
        for p in (seller, buyer):
            window = await p.inbox.next(trade_message("trade_update", tid))
            offers = {o["character_id"]: o for o in window["offers"]}
            assert [i["item_id"] for i in offers[seller.id]["items"]] == [item]
            assert offers[buyer.id]["gold"] == 20
            assert offers[seller.id]["confirmed"] and not offers[buyer.id]["confirmed"]
        state = await attacker.inbox.next(lambda m: m.get("type") == "combat_state")
        assert state["combat_id"] == cid and state["active"] is True
        assert state["round"] == 1

        # ... and finishes it with the same partner, on whichever process each is now
        await buyer.send(
            "trade_update", message_id="last", trade_id=tid, gold=20, confirmed=True, offers=seen
        )
        assert (await answer(buyer, "last"))["type"] == "ack"
        for p in (seller, buyer):
            done = await p.seen_or_next(trade_message("trade_complete", tid))
            assert done["success"] is True, done
        await request(
            defender, "combat_action", combat_id=cid, action_type="attack", target_id=attacker.id
        )
        hit = await attacker.inbox.next(lambda m: m.get("type") == "combat_damage")
        assert hit["source_id"] == defender.id and hit["combat_id"] == cid
        await fight_to_the_end(defender, cid)
        for p in (attacker, defender):
            end = await p.seen_or_next(lambda m: m.get("type") == "combat_end")
            assert end["combat_id"] == cid

        # the deserter's partner is told once the grace is over for him: the trade is
        # cancelled, and he fled the fight
        ended = await partner.seen_or_next(trade_message("trade_complete", lost))
        assert ended["success"] is False and ended["reason"] == "disconnected"
        won = await partner.seen_or_next(
            lambda m: (
                m.get("type") == "combat_end" and m["combat_id"] == duel["details"]["combat_id"]
            )
        )
        assert won["result"] == "victory"
        # the partner is free again
        await request(partner, "trade_request", target_id=defender.id)

        # nothing duplicated, nothing lost
        deserter.api.base = cluster.proxy.url
        assert await totals(everyone) == before
        assert item in [i["item_id"] for i in (await inventory(buyer))["items"]]
        for p in everyone:
            ends = [m for m in p.inbox.seen if m.get("type") in ("trade_complete", "combat_end")]
            keys = [(m["type"], m.get("trade_id") or m.get("combat_id")) for m in ends]
            assert len(keys) == len(set(keys)), keys
    finally:
        for p in everyone:
            await p.close()
