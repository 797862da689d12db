"""Peers introduced across lobby processes as on one: a party's members and a whisper
pairing, each side on another process and at another location; the player counts of
``/api/status`` and the world map are the cluster's."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from tests.lobby.cluster.conftest import Cluster, Player, join_as_peer, unique
from tests.lobby.cluster.test_cluster_resume import connect, drop, last_cursor
from tests.lobby.support import ApiClient
from tests.polling import eventually

pytestmark = pytest.mark.cluster

_ports = itertools.count(41000)


async def node_player(http: aiohttp.ClientSession, base: str, walk: tuple[int, ...]) -> Player:
    """A player on ``base`` with a registered peer node (one loopback endpoint), moved
    along ``walk`` (location ids) before anything else."""
    player = await join_as_peer(http, base, unique("node"), f"127.0.0.1:{next(_ports)}")
    for step, to in enumerate(walk):
        await player.send("move", message_id=f"walk{step}", to_location_id=to)
        got = await player.inbox.next(lambda m, s=step: m.get("ref_id") == f"walk{s}")
        assert got["type"] == "ack", got
    return player


def peer_info_of(other: Player, reason: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: (
        m.get("type") == "peer_info"
        and m.get("character_id") == other.id
        and m.get("pairing") == reason
    )


async def introduced(a: Player, b: Player, reason: str) -> str:
    """Both got the other's PEER_INFO for ``reason``, with its address and one pairing id."""
    to_a = await a.seen_or_next(peer_info_of(b, reason))
    to_b = await b.seen_or_next(peer_info_of(a, reason))
    assert to_a["pairing_id"] and to_a["pairing_id"] == to_b["pairing_id"]
    assert to_a["endpoints"] and to_b["endpoints"]
    assert to_a["endpoints"] != to_b["endpoints"]
    return str(to_a["pairing_id"])


async def test_a_party_on_three_processes_is_introduced_pair_by_pair(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    # three processes, three locations: only the party pairs them
    a = await node_player(http, cluster.lobbies[0].url, ())
    b = await node_player(http, cluster.lobbies[1].url, (2,))
    c = await node_player(http, cluster.lobbies[2].url, (2, 6))
    try:
        await a.send("party_create", message_id="create", name="Far Apart")
        party_id = (await a.inbox.next(lambda m: m.get("ref_id") == "create"))["details"][
            "party_id"
        ]
        for invitee in (b, c):
            await a.send("party_invite", message_id=f"inv{invitee.id}", target_id=invitee.id)
            await invitee.inbox.next_type("party_invite")
            await invitee.send("party_accept", message_id="acc", party_id=party_id)
            got = await invitee.inbox.next(lambda m: m.get("ref_id") == "acc")
            assert got["type"] == "ack", got
        ids = {await introduced(x, y, "party") for x, y in ((a, b), (a, c), (b, c))}
        assert len(ids) == 3  # a pairing id per pair
    finally:
        await asyncio.gather(a.close(), b.close(), c.close())


async def test_a_whisper_pairs_players_on_two_processes_both_at_once(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    a = await node_player(http, cluster.lobbies[0].url, ())
    b = await node_player(http, cluster.lobbies[1].url, (2,))
    try:
        status, entry, _ = await a.api.call("POST", f"/api/peers/{b.id}/pair")
        assert status == 200, entry
        assert entry["paired"] and entry["pairing"] == "whisper"
        assert entry["endpoints"] and entry["character_id"] == b.id
        pairing_id = await introduced(a, b, "whisper")
        assert entry["pairing_id"] == pairing_id
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_status_and_world_map_count_the_players_of_every_process(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    """Three players, one per process and location (the module's other players have
    left): every process counts three, one at each of their locations."""
    a = await node_player(http, cluster.lobbies[0].url, ())
    b = await node_player(http, cluster.lobbies[1].url, (2,))
    c = await node_player(http, cluster.lobbies[2].url, (2, 6))

    async def everyone_counts_them() -> bool:
        for lobby in cluster.lobbies:
            api = ApiClient(lobby.url, http)
            api.token = a.api.token
            _, status, _ = await api.call("GET", "/api/status")
            _, world, _ = await api.call("GET", "/api/world/map")
            where = {loc["id"]: loc["players"] for loc in world["locations"] if loc["players"]}
            if status["players_online"] != 3 or where != {1: 1, 2: 1, 6: 1}:
                return False
        return True

    try:
        await eventually(everyone_counts_them)
    finally:
        await asyncio.gather(a.close(), b.close(), c.close())


async def test_a_pairing_from_another_process_is_stamped_and_replayed_on_resume(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    """The PEER_INFO the process holding the asked side hands its player goes through
    the stream like every push: it carries a cursor, and a resume from an earlier cursor
    (on a third process) is replayed it."""
    a = await node_player(http, cluster.lobbies[0].url, ())
    b = await node_player(http, cluster.lobbies[1].url, (2,))
    try:
        b.ws, b.inbox = await connect(http, cluster.lobbies[1].url, b)  # asks for cursors
        await a.send("chat", content="before the pairing")
        await b.hears({"before the pairing"})
        before = last_cursor(b)
        status, entry, _ = await a.api.call("POST", f"/api/peers/{b.id}/pair")
        assert status == 200, entry
        live = await b.seen_or_next(peer_info_of(a, "whisper"))
        assert "cursor" in live, live
        await drop(b)
        b.ws, b.inbox = await connect(http, cluster.lobbies[2].url, b, before)
        replayed = await b.inbox.next(peer_info_of(a, "whisper"))
        assert replayed["cursor"] == live["cursor"]
        assert replayed["pairing_id"] == live["pairing_id"] == entry["pairing_id"]
        assert (await b.inbox.next_type("heartbeat"))["replay"] == "complete"
    finally:
        await asyncio.gather(a.close(), b.close())
