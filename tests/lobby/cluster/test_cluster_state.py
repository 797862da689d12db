"""State every process changes: a party whose members play on three processes, one shard."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.lobby.cluster.conftest import Cluster, Player, join, spread, unique

pytestmark = pytest.mark.cluster


def answer_to(message_id: str) -> Any:
    return lambda m: m.get("ref_id") == message_id


def party_of(size: int) -> Any:
    return lambda m: m.get("type") == "party_update" and len(m["members"]) == size


async def test_invites_and_concurrent_accepts_across_processes(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    a, b, c = [
        await join(http, lobby.url, unique("party"), "Crimson Covenant")
        for lobby in cluster.lobbies
    ]
    players: list[Player] = [a, b, c]
    try:
        await a.send("party_create", message_id="create", name="Wanderers")
        created = await a.inbox.next(answer_to("create"))
        assert created["type"] == "ack", created
        party_id = created["details"]["party_id"]
        # invites from lobby0 reach the invitees on lobby1 and lobby2
        for n, invitee in enumerate((b, c)):
            await a.send("party_invite", message_id=f"inv{n}", target_id=invitee.id)
            assert (await a.inbox.next(answer_to(f"inv{n}")))["type"] == "ack"
            invite = await invitee.inbox.next_type("party_invite")
            assert invite["party_id"] == party_id and invite["inviter_id"] == a.id
        # both accept at the same moment, each on its own process: both get in
        await asyncio.gather(
            b.send("party_accept", message_id="acc-b", party_id=party_id),
            c.send("party_accept", message_id="acc-c", party_id=party_id),
        )
        for p, ref in ((b, "acc-b"), (c, "acc-c")):
            got = await p.inbox.next(answer_to(ref))
            assert got["type"] == "ack", got
        for p in players:
            full = await p.seen_or_next(party_of(3))
            assert {m["character_id"] for m in full["members"]} == {a.id, b.id, c.id}
            assert full["leader_id"] == a.id
        # the party as any process tells it: three members, all online
        status, party, _ = await c.api.call("GET", "/api/party")
        assert status == 200
        assert sorted((m["character_id"], m["online"]) for m in party["members"]) == sorted(
            (p.id, True) for p in players
        )
        # leaving on lobby1 is seen on lobby0 and lobby2
        await b.send("party_leave", message_id="leave")
        assert (await b.inbox.next(answer_to("leave")))["type"] == "ack"
        for p in (a, c):
            two = await p.inbox.next(party_of(2))
            assert b.id not in {m["character_id"] for m in two["members"]}
    finally:
        for p in players:
            await p.close()


async def test_one_shard_captured_at_once_on_two_processes_has_one_owner(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    factions = ("Crimson Covenant", "Azure Syndicate")
    async with spread(http, cluster, *factions, prefix="cap") as (a, b):
        for p in (a, b):  # Haven's Rest -> Whispering Woods -> Heartwood Hollow (shard 3)
            for step, to in enumerate((2, 6)):
                await p.send("move", message_id=f"m{step}", to_location_id=to)
                assert (await p.inbox.next(answer_to(f"m{step}")))["type"] == "ack"
        await asyncio.gather(
            a.send("shard_capture", message_id="cap-a", shard_id=3),
            b.send("shard_capture", message_id="cap-b", shard_id=3),
        )
        answers = [await a.inbox.next(answer_to("cap-a")), await b.inbox.next(answer_to("cap-b"))]
        assert sorted(m["type"] for m in answers) == ["ack", "error"], answers
        refused = next(m for m in answers if m["type"] == "error")
        assert refused["error_code"] in ("already_owned", "shard_cooldown")
        winner = a if answers[0]["type"] == "ack" else b
        # everyone hears of one capture, by the winner, wherever they play
        for p in (a, b):
            captured = await p.seen_or_next(lambda m: m.get("type") == "shard_captured")
            assert captured["character_id"] == winner.id
        await a.send("chat", content="after the capture")
        await b.hears({"after the capture"})
        assert sum(m.get("type") == "shard_captured" for m in b.inbox.seen) == 1
