"""Players spread over 3 lobby processes (PostgreSQL + Redis) talk as if on one lobby,
with raw WebSockets and with the game client (``mesh.NetworkClient``)."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import aiohttp
import pytest

from mesh import MessageType
from protocol.crypto import Identity, b64url_decode, b64url_encode, verify_ticket
from tests.e2e.conftest import ClientFactory, Inbox
from tests.e2e.conftest import dead_endpoint as dead_endpoint  # a fixture
from tests.lobby.cluster.conftest import (
    CHAT_BURST,
    Cluster,
    Player,
    join,
    join_as_peer,
    spread,
    unique,
)
from tests.lobby.support import PASSWORD, ApiClient, aiohttp_inbox, raw_ws, ws_url
from tests.polling import eventually

pytestmark = pytest.mark.cluster


def chat_from(sender: Player, content: str) -> Any:
    return lambda m: m.get("type") == "chat" and m.get("content") == content


async def test_global_and_faction_chat_cross_processes_exactly_once(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    factions = ("Crimson Covenant", "Crimson Covenant", "Azure Syndicate")
    async with spread(http, cluster, *factions) as (a, b, c):
        await a.send("chat", content="hello from lobby0")
        for p in (a, b, c):
            got = await p.inbox.next(chat_from(a, "hello from lobby0"))
            assert got["sender_id"] == a.id
        await a.send("faction_chat", content="crimson only")
        got = await b.inbox.next(lambda m: m.get("type") == "faction_chat")
        assert got["content"] == "crimson only" and got["sender_id"] == a.id
        # a marker after it: every earlier push from lobby0 to lobby2 has arrived by then
        await a.send("chat", content="marker")
        for p in (a, b, c):
            await p.inbox.next(chat_from(a, "marker"))
        everything = [m for p in (a, b, c) for m in p.inbox.seen]
        assert not [m for m in c.inbox.seen if m.get("type") == "faction_chat"]
        hellos = [m for m in everything if m.get("content") == "hello from lobby0"]
        assert len(hellos) == 3  # once per player, never twice


async def test_relay_reaches_a_player_on_another_process_and_offline_is_true(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    async with spread(http, cluster, "Verdant Pact", "Verdant Pact", "Verdant Pact") as (a, _, c):
        # c's chat reaching a (through lobby1... lobby0) orders it after c's presence there
        await c.send("chat", content="c is here")
        await a.inbox.next(chat_from(c, "c is here"))
        payload = base64.b64encode(b"sealed bytes").decode()
        await a.send("relay", message_id="r1", target_id=c.id, payload=payload)
        got = await c.inbox.next_type("relay")
        assert (got["sender_id"], got["payload"]) == (a.id, payload)
        # nobody plays this character anywhere: the lobby says so
        await a.send("relay", message_id="r2", target_id=10**9, payload=payload)
        err = await a.inbox.next(lambda m: m.get("type") == "error" and m.get("ref_id") == "r2")
        assert err["error_code"] == "peer_unreachable"


async def test_a_flood_over_three_processes_gets_one_budget(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    """One account, a session on each process: CHAT_BURST chats pass in all, not 3x."""
    username = unique("flood")
    first = await join(http, cluster.lobbies[0].url, username)
    players = [first]
    for i in (1, 2):
        api = ApiClient(cluster.lobbies[i].url, http)
        await api.login(username)
        character = await api.create_character(f"Flood{i}{username}", "Azure Syndicate", "Mage")
        await api.select(int(character["id"]))
        ws = await http.ws_connect(ws_url(api.base), headers=api.headers())
        players.append(Player(api, character, ws, aiohttp_inbox(ws)))
    try:
        sent = 3 * CHAT_BURST
        for n in range(sent):
            await players[n % 3].send("chat", message_id=f"f{n}", content=f"flood {n}")
        outcomes: dict[str, str] = {}
        for n in range(sent):
            mine = players[n % 3]
            got = await mine.inbox.next(
                lambda m, n=n: m.get("message_id") == f"f{n}" or m.get("ref_id") == f"f{n}"
            )
            outcomes[f"f{n}"] = got["error_code"] if got["type"] == "error" else got["type"]
        assert sorted(outcomes.values()).count("chat") == CHAT_BURST
        assert set(outcomes.values()) == {"chat", "rate_limited"}
    finally:
        await asyncio.gather(*(p.close() for p in players))


async def test_every_process_signs_tickets_with_the_one_cluster_key(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    statuses = []
    for lobby in cluster.lobbies:
        async with http.get(f"{lobby.url}/api/status") as resp:
            statuses.append(await resp.json())
    assert len({s["lobby_public_key"] for s in statuses}) == 1
    key = b64url_decode(statuses[0]["lobby_public_key"])
    for lobby in cluster.lobbies:
        api = ApiClient(lobby.url, http)
        name = unique("tix")
        await api.register(name)
        await api.login(name)
        hero = await api.create_character(f"{name.capitalize()}Hero", "Verdant Pact", "Mage")
        identity = Identity.generate()
        answer = await api.select(
            int(hero["id"]),
            peer_public_key=b64url_encode(identity.public_key),
            box_key=b64url_encode(identity.box_public_key),
        )
        ticket = verify_ticket(answer["ticket"], key, now=time.time())
        assert ticket.character_id == hero["id"]


async def test_a_session_resuming_on_another_process_gets_what_was_queued_for_it(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    lobby1, lobby2 = cluster.lobbies[1], cluster.lobbies[2]
    q = await join(http, lobby2.url, unique("stay"), "Verdant Pact")
    r = await join(http, lobby1.url, unique("near"), "Verdant Pact")
    api = ApiClient(lobby1.url, http)
    name = unique("roam")
    await api.register(name)
    token = await api.login(name)
    hero = await api.create_character(f"{name.capitalize()}Hero", "Verdant Pact", "Mage")
    await api.select(int(hero["id"]))
    p: Player | None = None
    try:
        held = await _connections(http, lobby1.url)
        sock = await raw_ws(lobby1.port, token)
        await eventually(lambda: _holds(http, lobby1.url, held + 1))
        # p's network drops (no close frame): lobby1 keeps p inside the reconnect grace
        sock.close()
        await eventually(lambda: _holds(http, lobby1.url, held))
        await q.send("chat", content="while p was away")
        await r.hears({"while p was away"})  # lobby1 has it, and queued it for p
        # p comes back through another process (as a balancer may send it)
        ws = await http.ws_connect(ws_url(lobby2.url), headers=api.headers())
        p = Player(api, hero, ws, aiohttp_inbox(ws))
        await p.hears({"while p was away"})
        # lobby1 forgot p: a relay from r (on lobby1) goes to p on lobby2, not to a ghost
        payload = base64.b64encode(b"hi").decode()
        await r.send("relay", message_id="r-p", target_id=p.id, payload=payload)
        got = await p.inbox.next_type("relay")
        assert got["sender_id"] == r.id
        await q.send("chat", content="after")
        await p.hears({"after"})
        chats = [m["content"] for m in p.inbox.seen if m.get("type") == "chat"]
        assert chats.count("while p was away") == 1 and chats.count("after") == 1
    finally:
        for x in (p, q, r):
            if x is not None:
                await x.close()


async def _connections(http: aiohttp.ClientSession, base: str) -> int:
    async with http.get(f"{base}/api/status") as resp:
        return int((await resp.json())["connections"])


async def _holds(http: aiohttp.ClientSession, base: str, count: int) -> bool:
    """The lobby at ``base`` holds exactly ``count`` WebSocket connections."""
    return await _connections(http, base) == count


async def test_players_at_one_location_on_two_processes_get_each_others_peer_info(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    a = await join_as_peer(http, cluster.lobbies[0].url, unique("peer"), "127.0.0.1:9000")
    b = await join_as_peer(http, cluster.lobbies[2].url, unique("peer"), "127.0.0.1:9000")
    try:
        theirs = await a.seen_or_next(
            lambda m: m.get("type") == "peer_info" and m["character_id"] == b.id
        )
        mine = await b.seen_or_next(
            lambda m: m.get("type") == "peer_info" and m["character_id"] == a.id
        )
        async with http.get(f"{cluster.lobbies[1].url}/api/status") as resp:
            key = b64url_decode((await resp.json())["lobby_public_key"])
        for info, player in ((theirs, b), (mine, a)):
            assert info["location_id"] == 1 and info["endpoints"] == ["127.0.0.1:9000"]
            ticket = verify_ticket(info["ticket"], key, now=time.time())
            assert ticket.character_id == player.id
        # and the REST lookups of lobby0 find b, whom lobby2 holds
        name = b.character["name"]
        for path in (f"/api/peers/{b.id}", f"/api/peers?name={name.upper()}"):
            status, entry, _ = await a.api.call("GET", path)
            assert status == 200 and entry["ticket"] == theirs["ticket"], entry
            assert entry["endpoints"] == [] and not entry["paired"], entry  # identity only
    finally:
        await a.close()
        await b.close()


async def test_clients_on_three_processes_chat_and_whisper(
    on_cluster: ClientFactory, dead_endpoint: str
) -> None:
    alice = await on_cluster("Alicia", 0)
    bob = await on_cluster("Bobbin", 1)
    carol = await on_cluster("Carola", 2, p2p_advertise=[dead_endpoint], p2p_auto_connect=False)
    chats = {c: Inbox() for c in (alice, bob, carol)}
    whispers = {c: Inbox() for c in (bob, carol)}
    for c, inbox in chats.items():
        c.register_handler(MessageType.CHAT, inbox)
    for c, inbox in whispers.items():
        c.register_handler(MessageType.WHISPER, inbox)

    await alice.send_chat("hello, cluster")
    for inbox in chats.values():
        await inbox.wait_until(lambda items: any(m.content == "hello, cluster" for m in items))
    direct = await alice.send_whisper("Bobbin", "straight to you")
    assert direct.path == "direct"
    (got,) = await whispers[bob].wait_for(1)
    assert got.content == "straight to you" and got.sender_name == "Alicia"
    relayed = await alice.send_whisper("Carola", "through the lobbies")
    assert relayed.path == "relay"
    (got,) = await whispers[carol].wait_for(1)
    assert got.content == "through the lobbies" and got.sender_name == "Alicia"


async def test_failed_logins_over_three_processes_lock_at_one_budget(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    """``login_max_failures_per_account`` (5) wrong passwords from one address, spread over
    the processes, lock that address out of the account everywhere: not 5 per process."""
    name = unique("guard")
    await ApiClient(cluster.lobbies[0].url, http).register(name)
    outcomes = []
    for n in range(6):
        api = ApiClient(cluster.lobbies[n % 3].url, http)
        status, body, _ = await api.call(
            "POST", "/api/auth/login", {"username": name, "password": "wrong " + PASSWORD}
        )
        outcomes.append((status, body["code"]))
    assert outcomes[:5] == [(401, "invalid_credentials")] * 5
    assert outcomes[5][1] == "account_locked"
    # the owner's right password from the same address is refused too (that pair is locked)
    status, body, _ = await ApiClient(cluster.lobbies[2].url, http).call(
        "POST", "/api/auth/login", {"username": name, "password": PASSWORD}
    )
    assert body["code"] == "account_locked"
