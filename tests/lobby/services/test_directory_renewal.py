"""The directory on a repeated select (ticket renewal) and the ``level`` of PEER_INFO."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lobby import MasterServer
from protocol.crypto import b64url_decode, verify_ticket
from tests.lobby.services.conftest import MakePlayer
from tests.lobby.services.test_directory import keys
from tests.lobby.support import FakeClock


def lobby_key(server: MasterServer) -> bytes:
    return b64url_decode(server.ctx.key.public_key_b64)


async def test_selecting_the_same_character_again_refreshes_and_reintroduces(
    server: MasterServer, make_player: MakePlayer, game_clock: FakeClock
) -> None:
    id_a, sel_a = keys("127.0.0.1:41001")
    _, sel_b = keys("127.0.0.1:41002")
    _, sel_c = keys("127.0.0.1:41003")
    alice = await make_player(select=sel_a)
    bob = await make_player(select=sel_b)
    carol = await make_player(select=sel_c)
    first = await bob.next("peer_info", character_id=alice.id)
    first_expiry = verify_ticket(first["ticket"], lobby_key(server), now=game_clock()).expires_at
    await carol.next("peer_info", character_id=alice.id)
    # Carol joins Alice's party and walks away: she hears of Alice as a party member
    await carol.request("move", to_location_id=2)
    await alice.lead_party_with(carol)
    await carol.next("peer_info", character_id=alice.id)
    await alice.next("peer_info", character_id=carol.id)
    assert alice.box is not None and bob.box is not None and carol.box is not None
    for box in (alice.box, bob.box, carol.box):
        box.drain()

    # renewal with the same keys: a fresh ticket for the same node
    game_clock.advance(600)
    renewed = await alice.client.select(alice.id, **sel_a)
    assert renewed["ticket"] != alice.selected["ticket"]
    for player in (bob, carol):
        got = await player.next("peer_info", character_id=alice.id)
        assert got["ticket"] == renewed["ticket"] and got["node_id"] == id_a.peer_id
        ticket = verify_ticket(got["ticket"], lobby_key(server), now=game_clock())
        assert ticket.expires_at > first_expiry
    status, entry = await bob.rest("GET", f"/api/peers/{alice.id}")
    assert status == 200 and entry["ticket"] == renewed["ticket"]
    # ... and Alice is told again about those she may reach
    await alice.next("peer_info", character_id=bob.id)
    await alice.next("peer_info", character_id=carol.id)

    # renewal with new keys and endpoints (a restarted node): everyone gets the new entry
    id_new, sel_new = keys("127.0.0.1:41999")
    moved = await alice.client.select(alice.id, **sel_new)
    for player in (bob, carol):
        got = await player.next("peer_info", character_id=alice.id, ticket=moved["ticket"])
        assert got["endpoints"] == ["127.0.0.1:41999"] and got["node_id"] == id_new.peer_id
    status, entry = await carol.rest("GET", f"/api/peers/{alice.id}")
    assert entry["node_id"] == id_new.peer_id and entry["endpoints"] == ["127.0.0.1:41999"]
    # a renewal is not a departure: nobody saw Alice leave or arrive
    for player in (bob, carol):
        assert player.box is not None
        seen = {m["type"] for m in player.box.all if m.get("character_id") == alice.id}
        assert "player_left_area" not in seen
    joined = [m for m in bob.box.all if m["type"] == "player_joined_area"]
    assert all(m["character_id"] != alice.id for m in joined)


async def test_selecting_again_without_keys_drops_the_entry(
    server: MasterServer, make_player: MakePlayer
) -> None:
    _, sel_a = keys("127.0.0.1:41010")
    alice = await make_player(select=sel_a)
    bob = await make_player()
    assert (await bob.rest("GET", f"/api/peers/{alice.id}"))[0] == 200
    await alice.client.select(alice.id)
    status, err = await bob.rest("GET", f"/api/peers/{alice.id}")
    assert status == 404 and err["code"] == "not_found"


async def test_peer_info_carries_the_level(server: MasterServer, make_player: MakePlayer) -> None:
    _, sel_a = keys("127.0.0.1:41020")
    _, sel_b = keys("127.0.0.1:41021")
    alice = await make_player(select=sel_a)
    bob = await make_player(select=sel_b)
    got = await bob.next("peer_info", character_id=alice.id)
    assert got["level"] == alice.character["level"] == 1
    status, entry = await bob.rest("GET", f"/api/peers/{alice.id}")
    assert entry["level"] == 1
    # the level as the hub knows it (services keep it current)
    server.hub.update_character(alice.id, level=12)
    await bob.request("move", to_location_id=2)
    await alice.request("move", to_location_id=2)
    got = await bob.next("peer_info", character_id=alice.id, location_id=2)
    assert got["level"] == 12
    assert (await alice.next("peer_info", character_id=bob.id, location_id=2))["level"] == 1


async def test_a_renewal_racing_a_move_keeps_the_player_where_it_moved(
    server: MasterServer, make_player: MakePlayer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-select whose character read predates a MOVE that commits meanwhile (a client
    registering its STUN-learned address while the player walks on) leaves the player
    where it moved: paired there, no longer with those it left."""
    _, sel_a = keys("127.0.0.1:41020")
    _, sel_b = keys("127.0.0.1:41021")
    alice = await make_player(select=sel_a)
    bob = await make_player(select=sel_b)
    await bob.next("peer_info", character_id=alice.id)

    characters = server.ctx.characters
    read_done, move_done = asyncio.Event(), asyncio.Event()
    get_owned = characters.get_owned

    async def read_then_wait(account_id: int, character_id: int) -> Any:
        row = await get_owned(account_id, character_id)
        if character_id == alice.id:
            read_done.set()
            await move_done.wait()  # the fault: this read is now older than the move
        return row

    monkeypatch.setattr(characters, "get_owned", read_then_wait)
    renewal = asyncio.create_task(alice.client.select(alice.id, **sel_a))
    await asyncio.wait_for(read_done.wait(), 10)
    await alice.request("move", to_location_id=2)
    move_done.set()
    renewed = await asyncio.wait_for(renewal, 10)

    assert renewed["character"]["location_id"] == 2
    presence = server.ctx.hub.presence_of_character(alice.id)
    assert presence is not None and presence.character is not None
    assert presence.character.location_id == 2
    # Bob stayed at 1: no longer paired with Alice, he gets her identity alone
    status, entry = await bob.rest("GET", f"/api/peers/{alice.id}")
    assert status == 200 and entry["paired"] is False and entry["candidates"] == [], entry
