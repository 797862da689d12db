"""Peer directory pushes, peer lookups and the relay, against a real lobby."""

from __future__ import annotations

import base64
from pathlib import Path

import aiohttp

from lobby import MasterServer
from lobby.services import DirectoryService
from protocol.crypto import Identity, b64url_decode, b64url_encode, verify_ticket
from tests.lobby.services.conftest import MakePlayer, game_settings, new_player
from tests.lobby.support import FakeClock


def keys(endpoint: str) -> tuple[Identity, dict[str, object]]:
    identity = Identity.generate()
    return identity, {
        "peer_public_key": b64url_encode(identity.public_key),
        "box_key": b64url_encode(identity.box_public_key),
        "endpoints": [endpoint],
    }


async def test_co_located_players_get_each_others_peer_info(
    server: MasterServer, make_player: MakePlayer, game_clock: FakeClock
) -> None:
    id_a, sel_a = keys("127.0.0.1:40001")
    id_b, sel_b = keys("127.0.0.1:40002")
    alice = await make_player(select=sel_a)
    bob = await make_player(select=sel_b)
    plain = await make_player()  # no peer node: never paired, neither told nor announced

    about_bob = await alice.next("peer_info", character_id=bob.id)
    about_alice = await bob.next("peer_info", character_id=alice.id)

    status, body = await alice.rest("GET", "/api/status")
    lobby_key = b64url_decode(body["lobby_public_key"])
    for info, ident, player, endpoint in (
        (about_bob, id_b, bob, "127.0.0.1:40002"),
        (about_alice, id_a, alice, "127.0.0.1:40001"),
    ):
        ticket = verify_ticket(info["ticket"], lobby_key, now=game_clock())
        assert ticket.character_id == player.id
        assert ticket.public_key_bytes == ident.public_key
        assert ticket.endpoints == []  # the ticket names no address
        assert info["endpoints"] == [endpoint]
        assert info["node_id"] == ident.peer_id
        assert b64url_decode(info["public_key"]) == ident.public_key
        assert info["location_id"] == 1 and info["character_name"] == player.name
    # the select response carried the same ticket
    assert alice.selected["ticket"] == about_alice["ticket"]

    # a MOVE to a place where someone with a ticket stands exchanges entries there
    id_c, sel_c = keys("127.0.0.1:40003")
    carol = await make_player(select=sel_c)
    await carol.next("peer_info", character_id=alice.id)
    await alice.next("peer_info", character_id=carol.id)
    await carol.request("move", to_location_id=2)
    await alice.request("move", to_location_id=2, from_location_id=1)
    assert (await alice.next("peer_info", character_id=carol.id))["location_id"] == 2
    assert (await carol.next("peer_info", character_id=alice.id))["location_id"] == 2
    for p in (alice, bob, carol, plain):  # no one told of or about the player without a node
        assert p.box is not None
        assert not [
            m
            for m in p.box.all
            if m["type"] == "peer_info" and plain.id in (m["character_id"], p.id)
        ]


async def test_peer_lookup_by_id_and_name(server: MasterServer, make_player: MakePlayer) -> None:
    _, sel = keys("127.0.0.1:40010")
    alice = await make_player(select=sel, name="Lookupa")
    bob = await make_player()
    status, body = await bob.rest("GET", f"/api/peers/{alice.id}")
    assert status == 200 and body["character_id"] == alice.id and body["ticket"]
    status, by_name = await bob.rest("GET", "/api/peers?name=lookupA")
    assert status == 200 and by_name == body
    # no ticket, unknown, or offline: 404
    assert (await alice.rest("GET", f"/api/peers/{bob.id}"))[0] == 404
    assert (await alice.rest("GET", "/api/peers/99999"))[0] == 404
    await alice.disconnect()
    status, err = await bob.rest("GET", f"/api/peers/{alice.id}")
    assert status == 404 and err["code"] == "not_found"


async def test_relay_forwards_opaque_payload_with_the_senders_id(
    server: MasterServer, make_player: MakePlayer
) -> None:
    alice = await make_player()
    bob = await make_player()
    payload = base64.b64encode(bytes(range(256)) * 4).decode()
    before = (await alice.rest("GET", "/api/status"))[1]["relayed_messages"]
    mid = await alice.send("relay", target_id=bob.id, sender_id=424242, payload=payload)
    got = await bob.next("relay")
    assert got["sender_id"] == alice.id and got["payload"] == payload
    assert got["target_id"] == bob.id and got["message_id"] == mid
    after = (await alice.rest("GET", "/api/status"))[1]["relayed_messages"]
    assert after == before + 1

    # an offline target is refused, naming the relay message
    await bob.disconnect()
    mid = await alice.send("relay", target_id=bob.id, payload="AAAA")
    err = await alice.reply(mid)
    assert err["type"] == "error" and err["error_code"] == "peer_unreachable"
    assert err["ref_id"] == mid
    assert await alice.refused("relay", target_id=987654, payload="AAAA") == "peer_unreachable"
    # too big a payload never reaches anyone
    await alice.send("relay", target_id=alice.id, payload="A" * 60_000)
    err = await alice.next("error")
    assert err["error_code"] in ("invalid_message", "message_too_large")


async def test_party_members_get_peer_info_wherever_they_are(
    server: MasterServer, make_player: MakePlayer
) -> None:
    _, sel_a = keys("127.0.0.1:40020")
    _, sel_b = keys("127.0.0.1:40021")
    alice = await make_player(select=sel_a)
    bob = await make_player(select=sel_b)
    await alice.next("peer_info", character_id=bob.id)
    await bob.request("move", to_location_id=2)
    await alice.lead_party_with(bob)
    got = await alice.next("peer_info", character_id=bob.id)
    assert got["location_id"] == 2
    assert (await bob.next("peer_info", character_id=alice.id))["location_id"] == 1


async def test_relay_is_rate_limited_per_account_and_a_passed_service_wins(
    tmp_path: Path, web: aiohttp.ClientSession
) -> None:
    strict = DirectoryService(relay_rate=0.001, relay_burst=3)
    settings = game_settings(tmp_path / "data")
    async with MasterServer(settings=settings, clock=FakeClock(), services=[strict]) as lobby:
        assert lobby.ctx.services.directory is strict
        alice = await new_player(lobby.url, web)
        bob = await new_player(lobby.url, web)
        for _ in range(3):
            await alice.send("relay", target_id=bob.id, payload="AAAA")
            await bob.next("relay")
        mid = await alice.send("relay", target_id=bob.id, payload="AAAA")
        err = await alice.reply(mid)
        assert err["error_code"] == "rate_limited" and err["details"]["retry_after"] > 0
        assert strict.relayed_messages == 3
        await alice.disconnect()
        await bob.disconnect()
