"""Parties over WS and REST: invites that expire, leader rules, size limit, handover."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from lobby import MasterServer
from lobby.storage.game_schema import items, parties
from tests.lobby.services.conftest import MakePlayer
from tests.lobby.support import FakeClock


async def test_party_flow_and_refusals_over_ws(
    server: MasterServer, make_player: MakePlayer, game_clock: FakeClock
) -> None:
    lead = await make_player(name="Leader")
    bob = await make_player(name="Bobby")
    carol = await make_player(name="Carol")
    outsider = await make_player(name="Outsider")

    party = (await lead.request("party_create", name="Shardseekers"))["details"]["party_id"]
    first = await lead.next("party_update", party_id=party)
    assert first["leader_id"] == lead.id and first["name"] == "Shardseekers"
    assert await lead.refused("party_create") == "already_in_party"

    await lead.request("party_invite", target_name="bobby")
    invite = await bob.next("party_invite", party_id=party)
    assert invite["inviter_id"] == lead.id and invite["inviter_name"] == lead.name
    await bob.request("party_accept", party_id=party)
    update = await lead.next("party_update", party_id=party)
    while len(update["members"]) < 2:
        update = await lead.next("party_update", party_id=party)
    assert [m["character_id"] for m in update["members"]] == [lead.id, bob.id]
    assert [m["is_leader"] for m in update["members"]] == [True, False]
    assert all(m["online"] for m in update["members"])

    # only the leader kicks or disbands; nobody acts for a party they are not in
    assert await bob.refused("party_kick", target_id=lead.id) == "not_party_leader"
    assert await bob.refused("party_disband", party_id=party) == "not_party_leader"
    assert await outsider.refused("party_kick", target_id=bob.id) == "not_in_party"
    assert await outsider.refused("party_accept", party_id=party) == "not_found"

    # an invite expires on the lobby's clock
    await bob.request("party_invite", target_id=carol.id)
    await carol.next("party_invite", party_id=party)
    game_clock.advance(server.ctx.world.rules.invite_ttl_seconds)
    assert await carol.refused("party_accept", party_id=party) == "invite_expired"

    # the REST view: members and invitees only
    status, body = await bob.rest("GET", f"/api/party/{party}")
    assert status == 200 and body["leader_id"] == lead.id and body["invites"] == []
    assert (await outsider.rest("GET", f"/api/party/{party}"))[0] == 404
    assert (await outsider.rest("GET", "/api/party/nope"))[0] == 404

    await lead.request("party_kick", target_id=bob.id)
    kicked = await bob.next("party_kick", party_id=party)
    assert kicked["target_id"] == bob.id
    assert (await bob.rest("GET", "/api/party"))[0] == 404
    await lead.request("party_disband", party_id=party)
    await lead.next("party_disband", party_id=party)
    assert (await lead.rest("GET", f"/api/party/{party}"))[0] == 404


async def test_rest_endpoints_size_limit_and_leadership_handover(
    server: MasterServer, make_player: MakePlayer
) -> None:
    limit = server.ctx.world.rules.party_size_limit
    players = [await make_player() for _ in range(limit + 1)]
    lead, *rest = players
    status, party = await lead.rest("POST", "/api/party/create", {"name": "Big"})
    assert status == 201 and party["leader_id"] == lead.id
    for p in rest[: limit - 1]:
        status, body = await lead.rest("POST", "/api/party/invite", {"target_id": p.id})
        assert status == 200, body
        status, body = await p.rest("POST", "/api/party/accept", {"party_id": party["party_id"]})
        assert status == 200, body
    assert len(body["members"]) == limit
    status, err = await lead.rest("POST", "/api/party/invite", {"target_id": rest[-1].id})
    assert status == 409 and err["code"] == "party_full"
    status, err = await lead.rest("POST", "/api/party/invite", {})
    assert status == 422

    # the leader leaves: the longest-standing member leads
    assert await lead.rest("POST", "/api/party/leave") == (200, {"ok": True})
    status, body = await rest[0].rest("GET", f"/api/party/{party['party_id']}")
    assert body["leader_id"] == rest[0].id and len(body["members"]) == limit - 1
    update = await rest[1].next("party_update", leader_id=rest[0].id)
    assert lead.id not in [m["character_id"] for m in update["members"]]

    # the leader disconnects for good: the longest-standing online member leads
    await rest[1].disconnect()
    await rest[0].disconnect()
    update = await rest[2].next("party_update", leader_id=rest[2].id)
    online = {m["character_id"]: m["online"] for m in update["members"]}
    assert online[rest[0].id] is False and online[rest[2].id] is True
    # membership survives going offline
    status, body = await rest[2].rest("GET", "/api/party")
    assert rest[0].id in [m["character_id"] for m in body["members"]]


async def test_deleting_a_character_leaves_its_party_and_drops_its_items(
    server: MasterServer, make_player: MakePlayer
) -> None:
    lead = await make_player()
    member = await make_player()
    party = (await lead.request("party_create"))["details"]["party_id"]
    await lead.request("party_invite", target_id=member.id)
    await member.request("party_accept", party_id=party)
    status, _ = await lead.rest("DELETE", f"/api/characters/{lead.id}")
    assert status == 200
    update = await member.next("party_update", leader_id=member.id)
    assert [m["character_id"] for m in update["members"]] == [member.id]
    async with server.ctx.db.read() as db:
        left = (
            await db.execute(
                select(func.count()).select_from(items).where(items.c.owner_id == lead.id)
            )
        ).scalar_one()
    assert left == 0


async def test_an_invite_dies_with_its_character_and_never_reaches_a_newer_one(
    server: MasterServer, make_player: MakePlayer
) -> None:
    """C invites A's character; A deletes it; B creates a character (which, with reused
    ids, got the same id and the same starter item ids); B's accept is refused."""
    carol = await make_player(name="Carol")
    alice = await make_player(name="Alice")
    party = (await carol.request("party_create"))["details"]["party_id"]
    await carol.request("party_invite", target_id=alice.id)
    await alice.next("party_invite", party_id=party)
    status, kit = await alice.rest("GET", "/api/inventory")
    assert status == 200 and kit["items"]
    alice_items = {i["item_id"] for i in kit["items"]}
    status, body = await carol.rest("GET", "/api/party")
    assert [i["character_id"] for i in body["invites"]] == [alice.id]

    status, _ = await alice.rest("DELETE", f"/api/characters/{alice.id}")
    assert status == 200
    status, before = await carol.rest("GET", "/api/party")
    assert status == 200 and before["invites"] == []  # the invite went with the character
    async with server.ctx.db.read() as db:
        stored = (await db.execute(select(parties.c.data))).scalars().all()
    assert [json.loads(d)["invites"] for d in stored] == [[]]

    bob = await make_player(name="Bobby")
    assert bob.id != alice.id  # ids are never reused ...
    status, kit = await bob.rest("GET", "/api/inventory")
    assert status == 200 and not alice_items & {i["item_id"] for i in kit["items"]}
    assert await bob.refused("party_accept", party_id=party) == "not_found"
    status, body = await bob.rest("POST", "/api/party/accept", {"party_id": party})
    assert (status, body["code"]) == (404, "not_found")
    status, body = await carol.rest("GET", "/api/party")
    assert [m["character_id"] for m in body["members"]] == [carol.id]
