"""``kill -9`` of one lobby process under chat (and trade) load, clients behind HAProxy."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from lobby.cluster import open_redis
from lobby.storage import Database
from lobby.storage.game_schema import trades
from protocol.resume import RESUME_CURSOR_PARAM
from tests.lobby.cluster.conftest import (
    Cluster,
    Player,
    join,
    running_cluster,
    select_character,
    unique,
)
from tests.lobby.cluster.engaging import Refused, answer, inventory, request, totals
from tests.lobby.support import ApiClient, aiohttp_inbox, ws_url

pytestmark = pytest.mark.cluster

PLAYERS = 9


async def connect(
    http: aiohttp.ClientSession, base: str, api: ApiClient, cursor: str | None = None
) -> Any:
    """A WebSocket for ``api``'s session; with ``cursor`` (``""``: none yet) it asks for
    resume cursors and resumes after that one (:mod:`protocol.resume`)."""
    params = None if cursor is None else {RESUME_CURSOR_PARAM: cursor}
    ws = await http.ws_connect(ws_url(base), headers=api.headers(), params=params)
    return ws, aiohttp_inbox(ws)


def is_chat(content: str) -> Any:
    return lambda m: m.get("type") == "chat" and m.get("content") == content


async def _everyone_hears_everyone(players: list[Player]) -> None:
    """Each player says hello and hears every player's hello: all are present
    cluster-wide, whichever process holds them."""
    for p in players:
        await p.send("chat", message_id=f"hello{p.id}", content=f"hello {p.id}")
    for p in players:
        await p.hears({f"hello {q.id}" for q in players})


async def test_a_chat_retried_on_another_process_is_delivered_once(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    """A client whose chat copy did not come back re-sends it (same ``message_id``),
    here on another process: the others get it once, the sender its copy again."""
    first, second, third = cluster.lobbies
    sender = await join(http, first.url, unique("retry"), "Azure Syndicate")
    listener = await join(http, third.url, unique("listen"), "Azure Syndicate")
    try:
        await sender.send("chat", message_id="once", content="said once")
        await sender.hears({"said once"})
        await sender.close()
        sender.ws, sender.inbox = await connect(http, second.url, sender.api)
        await sender.send("chat", message_id="once", content="said once")
        again = await sender.hears({"said once"})
        assert again[0]["sender_id"] == sender.id
        await sender.send("chat", message_id="after", content="said after")
        await listener.hears({"said once", "said after"})
        copies = [m for m in listener.inbox.seen if m.get("content") == "said once"]
        assert len(copies) == 1
    finally:
        await sender.close()
        await listener.close()


async def test_kill_9_clients_reconnect_through_haproxy_and_the_dead_drop_out(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    # accounts and characters first (directly), so that the 9 WebSockets are the only
    # traffic through HAProxy: round robin puts exactly 3 on each process
    apis: list[tuple[ApiClient, dict[str, Any]]] = []
    for _ in range(PLAYERS):
        apis.append(
            await select_character(
                http, cluster.lobbies[0].url, unique("kill"), "Azure Syndicate", "Mage"
            )
        )
    players: list[Player] = []
    for api, character in apis:
        ws, inbox = await connect(http, cluster.proxy.url, api)
        players.append(Player(api, character, ws, inbox))
    try:
        await _everyone_hears_everyone(players)

        # chat load from every player while one process dies
        async def chatter(p: Player, count: int) -> None:
            for n in range(count):
                try:
                    await p.send("chat", content=f"load {p.id} {n}")
                except ConnectionError:  # its process died under it: it reconnects below
                    return
                await asyncio.sleep(0.01)  # a steady trickle, not a burst (rate-limited)

        load = [asyncio.create_task(chatter(p, 3)) for p in players]
        victim = cluster.lobbies[0]
        victim.kill()
        await asyncio.gather(*load)

        dropped = await _first_closed(players, PLAYERS // 3)
        survivors = [p for p in players if p not in dropped]

        # two of the dropped reconnect through HAProxy with their session; one stays away
        back, away = dropped[:-1], dropped[-1]
        for p in back:
            p.ws, p.inbox = await connect(http, cluster.proxy.url, p.api)
        everyone = survivors + back
        for p in back:
            await p.send("chat", message_id=f"back{p.id}", content=f"back {p.id}")
        for p in everyone:
            heard = await p.hears({f"back {q.id}" for q in back})
            # the same characters, resumed
            assert {m["sender_id"] for m in heard} == {q.id for q in back}

        # every chat a survivor had acknowledged (its own echo) reached every survivor
        for q in survivors:
            acked = {
                m["content"]
                for m in q.inbox.seen
                if m.get("type") == "chat" and m["sender_id"] == q.id
            }
            for p in survivors:
                await p.hears(acked)

        # the one who stayed away drops out of the cluster within the presence TTL:
        # the players at his location are told, and he is offline for the relay
        for p in everyone:
            left = await p.inbox.next(
                lambda m: m.get("type") == "player_left_area" and m["character_id"] == away.id
            )
            assert left["character_name"] == away.character["name"]
        payload = base64.b64encode(b"x").decode()
        s = survivors[0]
        await s.send("relay", message_id="to-away", target_id=away.id, payload=payload)
        err = await s.inbox.next(lambda m: m.get("ref_id") == "to-away")
        assert err["type"] == "error" and err["error_code"] == "peer_unreachable"
        # ... while the ones who came back are reachable wherever they are now
        await s.send("relay", message_id="to-back", target_id=back[0].id, payload=payload)
        got = await back[0].inbox.next_type("relay")
        assert got["sender_id"] == s.id

        # no chat arrived twice at anyone
        for p in everyone:
            ids = [(m["sender_id"], m["content"]) for m in p.inbox.seen if m.get("type") == "chat"]
            assert len(ids) == len(set(ids))
    finally:
        for p in players:
            await p.close()


async def _first_closed(players: list[Player], count: int) -> list[Player]:
    """The first ``count`` players whose socket the server side closes (waits for them)."""

    async def until_closed(p: Player) -> Player:
        with pytest.raises(ConnectionError):
            await p.inbox.next(lambda m: False, wait=30.0)
        return p

    waiting = [asyncio.create_task(until_closed(p)) for p in players]
    closed: list[Player] = []
    try:
        for next_closed in asyncio.as_completed(waiting):
            closed.append(await next_closed)
            if len(closed) == count:
                break
    finally:
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
    return closed


async def test_sigterm_drains_one_process_its_clients_move_to_the_others(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    """Graceful drain: stop accepting, DISCONNECT + 1001 to each client, flush, exit 0."""
    live = [lobby for lobby in cluster.lobbies if lobby.proc and lobby.proc.poll() is None]
    draining, other = live[0], live[1]
    leaving = await join(http, draining.url, unique("drain"), "Azure Syndicate")
    staying = await join(http, other.url, unique("keep"), "Azure Syndicate")
    try:
        await leaving.send("chat", content="before the drain")
        await staying.hears({"before the drain"})
        assert draining.proc is not None
        draining.proc.send_signal(signal.SIGTERM)
        bye = await leaving.inbox.next_type("disconnect")
        assert "shutting down" in bye["reason"]
        msg = await leaving.ws.receive(timeout=10)
        while msg.type == aiohttp.WSMsgType.TEXT:
            msg = await leaving.ws.receive(timeout=10)
        # "going away": clients reconnect
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1001)
        assert draining.proc.wait(30) == 0
        # the client reconnects through HAProxy: it can only land on a live process
        leaving.ws, leaving.inbox = await connect(http, cluster.proxy.url, leaving.api)
        await leaving.send("chat", content="after the drain")
        heard = await staying.hears({"after the drain"})
        assert heard[0]["sender_id"] == leaving.id
    finally:
        await leaving.close()
        await staying.close()


# -- kill -9 under chat and trade load ------------------------------------------------------

PAIRS = 6
ROUNDS_AFTER_KILL = 2
TRADES_BEFORE_KILL = 4
STEP = 8.0
"""Seconds any one step of the load waits for its answer (a step cut by the kill ends it)."""


@pytest.fixture
def own_cluster(postgres_url: str) -> Iterator[Cluster]:
    """A cluster for one test (its process is killed; the module's is left alone)."""
    with running_cluster(postgres_url, "shards-load-") as running:
        yield running


@dataclass
class Load:
    """What the load saw: the acknowledged trades, the chats sent, the phase."""

    killed: asyncio.Event = field(default_factory=asyncio.Event)
    enough: asyncio.Event = field(default_factory=asyncio.Event)
    acked_trades: set[str] = field(default_factory=set)
    last_trade: dict[int, str] = field(default_factory=dict)
    chats: dict[int, list[str]] = field(default_factory=dict)
    """Player id -> the message ids of the chats it sent (in order)."""

    def trade_done(self, tid: str) -> None:
        self.acked_trades.add(tid)
        if len(self.acked_trades) >= TRADES_BEFORE_KILL:
            self.enough.set()


async def say(p: Player, load: Load, n: int) -> None:
    mid = f"l{p.id}-{n}"
    load.chats.setdefault(p.id, []).append(mid)
    await p.send("chat", message_id=mid, content=f"load {p.id} {n}")


async def one_trade(a: Player, b: Player, load: Load, rng: random.Random) -> None:
    """One trade from request to completion, each step checked (raises when cut)."""
    tid = str((await request(a, "trade_request", target_id=b.id))["details"]["trade_id"])
    load.last_trade[a.id] = load.last_trade[b.id] = tid
    await b.seen_or_next(trade_message("trade_request", tid))
    await request(b, "trade_accept", trade_id=tid)
    mine = [i["item_id"] for i in (await inventory(a))["items"]]
    picked = rng.sample(mine, k=min(1, len(mine)))
    gold = rng.randint(1, 5)
    await request(a, "trade_update", trade_id=tid, items=[{"item_id": i} for i in picked])
    await request(b, "trade_update", trade_id=tid, gold=gold)
    seen = [
        {"character_id": a.id, "items": [{"item_id": i} for i in picked], "gold": 0},
        {"character_id": b.id, "items": [], "gold": gold},
    ]
    items = [{"item_id": i} for i in picked]
    await request(a, "trade_update", trade_id=tid, items=items, confirmed=True, offers=seen)
    await request(b, "trade_update", trade_id=tid, gold=gold, confirmed=True, offers=seen)
    done = await a.seen_or_next(trade_message("trade_complete", tid))
    assert done["success"] is True, done
    load.trade_done(tid)


async def trade_and_chat(a: Player, b: Player, load: Load, seed: int) -> None:
    """A pair's load: a chat each, then trades until a few rounds after the kill. Ends
    quietly when the kill cuts a step (a socket closed, an answer that will not come)."""
    rng = random.Random(seed)
    try:
        for p in (a, b):
            await say(p, load, 0)
            await p.hears({f"load {p.id} 0"})
        after = 0
        while after < ROUNDS_AFTER_KILL:
            if load.killed.is_set():
                after += 1
            await asyncio.wait_for(one_trade(a, b, load, rng), STEP)
    except (ConnectionError, TimeoutError, aiohttp.ClientError, Refused):
        return


def trade_message(kind: str, tid: str) -> Any:
    return lambda m: m.get("type") == kind and m.get("trade_id") == tid


async def held_by(cluster: Cluster, process: str) -> set[int]:
    """The characters ``process`` holds, from the cluster's presence directory in Redis."""
    client = await open_redis(cluster.redis.url)
    try:
        share = await client.hgetall(f"shards:presence:{process}")
    finally:
        await client.aclose()
    return {int(json.loads(v)[1]) for v in share.values()}


async def test_kill_9_under_chat_and_trade_load(
    own_cluster: Cluster, http: aiohttp.ClientSession, postgres_url: str
) -> None:
    cluster = own_cluster
    victim = cluster.lobbies[0]
    # accounts and characters on a process that stays, so that the WebSockets are the only
    # traffic through HAProxy: round robin spreads them, and each pair spans two processes
    players: list[Player] = []
    for _ in range(2 * PAIRS):
        api, character = await select_character(
            http, cluster.lobbies[1].url, unique("load"), "Verdant Pact", "Rogue"
        )
        api.base = cluster.proxy.url
        ws, inbox = await connect(http, cluster.proxy.url, api, cursor="")
        players.append(Player(api, character, ws, inbox))
    try:
        await _everyone_hears_everyone(players)
        doomed = await held_by(cluster, victim.name)
        victims = [p for p in players if p.id in doomed]
        survivors = [p for p in players if p.id not in doomed]
        assert victims and survivors
        before = await totals(players)

        load = Load()
        pairs = [(players[i], players[i + 1]) for i in range(0, len(players), 2)]
        running = [
            asyncio.create_task(trade_and_chat(a, b, load, seed))
            for seed, (a, b) in enumerate(pairs)
        ]
        await asyncio.wait_for(load.enough.wait(), 60)
        # chats in flight as the process dies, and right after, from both sides
        for p in victims:
            await say(p, load, 1)
        victim.kill()
        load.killed.set()
        for p in survivors:
            await say(p, load, 1)
        await asyncio.wait_for(asyncio.gather(*running), 60)

        # the victim's clients read what reached them before their sockets closed ...
        before_kill: dict[int, list[dict[str, Any]]] = {}
        for p in victims:
            with contextlib.suppress(ConnectionError):
                await p.inbox.next(lambda m: False, wait=30.0)
            before_kill[p.id] = list(p.inbox.seen)
        echoed = {p.id: {m.get("message_id") for m in before_kill[p.id]} for p in victims}
        # ... and reconnect through HAProxy with their sessions and last cursors
        for p in victims:
            cursors = [m["cursor"] for m in before_kill[p.id] if "cursor" in m]
            p.ws, p.inbox = await connect(http, cluster.proxy.url, p.api, cursors[-1])
            notice = await p.inbox.next_type("heartbeat")
            assert notice["replay"] == "complete", notice
        # ... and re-send, with the same message ids, the chats whose copy (the
        # acknowledgement) did not come back: each was delivered already or was not
        resent: dict[int, set[str]] = {}
        for p in victims:
            for mid in load.chats[p.id]:
                if mid not in echoed[p.id]:
                    text = f"load {p.id} {mid.rsplit('-', 1)[1]}"
                    resent.setdefault(p.id, set()).add(text)
                    await p.send("chat", message_id=mid, content=text)
        # ... and end the trades the kill left open (any side may; one already over is fine)
        for tid in set(load.last_trade.values()) - load.acked_trades:
            a, b = (p for p in players if load.last_trade.get(p.id) == tid)
            for p in (a, b):
                await p.send("trade_decline", message_id=f"end-{tid}-{p.id}", trade_id=tid)
                got = await answer(p, f"end-{tid}-{p.id}")
                if got["type"] == "ack":
                    break
                assert got["error_code"] in ("not_found", "trade_invalid"), got

        # every chat was delivered, once, to everyone connected throughout, and its sender
        # has its copy (the acknowledgement); nobody got any chat twice
        every = {
            f"load {pid} {mid.rsplit('-', 1)[1]}"
            for pid, mids in load.chats.items()
            for mid in mids
        }
        for p in survivors:
            await p.hears(every)
        assert resent  # at least the chats sent as the process died
        for p in victims:  # the copies of the re-sent: its character's, resumed
            heard = await p.hears(resent.get(p.id, set()))
            assert {m["sender_id"] for m in heard} <= {p.id}
        # the victims too got every chat: before the kill, or replayed after it (what
        # their dead process had queued, what was said between the kill and their resume)
        for p in victims:
            got = {m.get("content") for m in before_kill[p.id]}
            await p.hears(every - got)
        for p in players:
            seen = before_kill.get(p.id, []) + p.inbox.seen
            copies = [(m["sender_id"], m["message_id"]) for m in seen if m.get("type") == "chat"]
            assert len(copies) == len(set(copies)), p.id

        # every acknowledged trade is stored; items and gold are conserved
        assert load.acked_trades
        db = await Database.open(postgres_url, now=0.0)
        try:
            async with db.read() as conn:
                stored = {
                    str(r[0])
                    for r in await conn.execute(
                        select(trades.c.trade_id).where(trades.c.trade_id.in_(load.acked_trades))
                    )
                }
        finally:
            await db.close()
        assert stored == load.acked_trades
        assert await totals(players) == before
    finally:
        for p in players:
            await p.close()
