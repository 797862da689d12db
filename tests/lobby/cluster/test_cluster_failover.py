"""``kill -9`` of one lobby process under chat load, clients behind HAProxy."""

from __future__ import annotations

import asyncio
import base64
import signal
from typing import Any

import aiohttp
import pytest

from tests.lobby.cluster.conftest import Cluster, Player, join, unique
from tests.lobby.support import ApiClient, aiohttp_inbox, ws_url

pytestmark = pytest.mark.cluster

PLAYERS = 9


async def connect(http: aiohttp.ClientSession, base: str, api: ApiClient) -> Any:
    ws = await http.ws_connect(ws_url(base), headers=api.headers())
    return ws, aiohttp_inbox(ws)


def is_chat(content: str) -> Any:
    return lambda m: m.get("type") == "chat" and m.get("content") == content


async def test_kill_9_clients_reconnect_through_haproxy_and_the_dead_drop_out(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    # accounts and characters first (directly), so that the 9 WebSockets are the only
    # traffic through HAProxy: round robin puts exactly 3 on each process
    apis: list[tuple[ApiClient, dict[str, Any]]] = []
    for _ in range(PLAYERS):
        api = ApiClient(cluster.lobbies[0].url, http)
        name = unique("kill")
        await api.register(name)
        await api.login(name)
        character = await api.create_character(
            f"{name.capitalize()}Hero", "Azure Syndicate", "Mage"
        )
        await api.select(int(character["id"]))
        apis.append((api, character))
    players: list[Player] = []
    for api, character in apis:
        ws, inbox = await connect(http, cluster.proxy.url, api)
        players.append(Player(api, character, ws, inbox))
    try:
        # every player hears every other: all are present cluster-wide
        for p in players:
            await p.send("chat", message_id=f"hello{p.id}", content=f"hello {p.id}")
        for p in players:
            await p.hears({f"hello {q.id}" for q in players})

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
