"""The lobby as rendezvous: addresses only to paired peers, both at once; TURN credentials."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lobby import MasterServer
from lobby.services.rendezvous import PairingBook
from protocol.candidates import CandidateKind, candidate_priority
from protocol.crypto import Identity, b64url_decode, b64url_encode, verify_ticket
from protocol.errors import StunError, StunIntegrityError
from protocol.turn import verify_turn_rest_credentials
from tests.lobby.services.conftest import MakePlayer, game_settings, new_player
from tests.lobby.services.players import GamePlayer
from tests.lobby.support import FakeClock

PORTS = iter(range(43000, 44000))


def node(*extra: dict[str, Any]) -> tuple[Identity, dict[str, Any], str]:
    """Fresh peer keys and a select body with one host endpoint (and extra candidates)."""
    identity = Identity.generate()
    endpoint = f"127.0.0.1:{next(PORTS)}"
    body: dict[str, Any] = {
        "peer_public_key": b64url_encode(identity.public_key),
        "box_key": b64url_encode(identity.box_public_key),
        "endpoints": [endpoint],
    }
    if extra:
        body["candidates"] = list(extra)
    return identity, body, endpoint


def srflx(address: str, port: int) -> dict[str, Any]:
    return {
        "kind": "srflx",
        "address": address,
        "port": port,
        "priority": candidate_priority(CandidateKind.SRFLX),
    }


async def barrier(player: GamePlayer) -> None:
    """Every push queued for ``player`` before now has arrived (the lobby keeps order)."""
    await player.send("heartbeat")
    await player.next("heartbeat")


def leaks(player: GamePlayer, *needles: str, since: int = 0) -> list[dict[str, Any]]:
    """Messages ``player`` received (from the ``since``-th on) that mention an address."""
    assert player.box is not None
    return [m for m in player.box.all[since:] if any(n in json.dumps(m) for n in needles)]


async def test_an_unpaired_player_learns_no_address_by_rest_or_ws(
    server: MasterServer, make_player: MakePlayer, game_clock: FakeClock
) -> None:
    _, sel_b, _ = node()
    bob = await make_player(select=sel_b)
    await bob.request("move", to_location_id=2)
    _, sel_a, addr_a = node(srflx("203.0.113.7", 40123))
    alice = await make_player(select=sel_a, name="Farawaya")
    await barrier(alice)  # her WebSocket joined: she is online

    # REST: the identity (ticket, keys) is answered, no address: not in the fields,
    # not inside the signed ticket either
    lobby_key = b64url_decode(server.ctx.key.public_key_b64)
    for path in (f"/api/peers/{alice.id}", "/api/peers?name=farawaya"):
        status, body = await bob.rest("GET", path)
        assert status == 200, body
        assert body["character_id"] == alice.id and body["ticket"]
        assert addr_a not in json.dumps(body) and "203.0.113.7" not in json.dumps(body)
        assert body["paired"] is False and body["pairing"] is None
        assert body["candidates"] == [] and body["endpoints"] == []
        assert verify_ticket(body["ticket"], lobby_key, now=game_clock()).endpoints == []

    # WS: neither her arrival nor a renewal with new addresses reaches Bob
    _, sel_new, addr_new = node()
    await alice.client.select(alice.id, **sel_new)
    await barrier(bob)
    assert leaks(bob, addr_a, addr_new, "203.0.113.7") == []
    assert bob.box is not None
    assert not [m for m in bob.box.all if m["type"] == "peer_info"]


async def test_co_located_nodes_get_each_others_candidates_at_once(
    server: MasterServer, make_player: MakePlayer
) -> None:
    id_a, sel_a, addr_a = node(srflx("203.0.113.10", 50001))
    id_b, sel_b, addr_b = node()
    alice = await make_player(select=sel_a)
    bob = await make_player(select=sel_b)
    to_alice = await alice.next("peer_info", character_id=bob.id)
    to_bob = await bob.next("peer_info", character_id=alice.id)
    # one pairing, announced to both in the same step
    assert to_alice["pairing"] == to_bob["pairing"] == "location"
    assert to_alice["pairing_id"] and to_alice["pairing_id"] == to_bob["pairing_id"]
    assert [c["kind"] for c in to_bob["candidates"]] == ["host", "srflx"]  # best first
    assert to_bob["candidates"][1] == srflx("203.0.113.10", 50001)
    assert to_bob["endpoints"] == [addr_a, "203.0.113.10:50001"]
    assert to_alice["endpoints"] == [addr_b] and to_alice["node_id"] == id_b.peer_id
    assert to_bob["node_id"] == id_a.peer_id
    # REST agrees while they are paired, with the same pairing id
    status, entry = await bob.rest("GET", f"/api/peers/{alice.id}")
    assert status == 200 and entry["paired"] is True and entry["pairing"] == "location"
    assert entry["candidates"] == to_bob["candidates"]


async def test_moving_away_unpairs(server: MasterServer, make_player: MakePlayer) -> None:
    _, sel_a, _ = node()
    _, sel_b, addr_b = node()
    alice = await make_player(select=sel_a)
    bob = await make_player(select=sel_b)
    await alice.next("peer_info", character_id=bob.id)
    await bob.request("move", to_location_id=2)
    _, sel_new, addr_new = node()
    await bob.client.select(bob.id, **sel_new)  # new addresses after the move
    await barrier(alice)
    assert leaks(alice, addr_new) == []
    status, entry = await alice.rest("GET", f"/api/peers/{bob.id}")
    assert status == 200 and addr_new not in json.dumps(entry) and addr_b not in json.dumps(entry)
    assert entry["paired"] is False and entry["candidates"] == []
    # back together: paired again, with the current addresses, both told
    await bob.request("move", to_location_id=1)
    got = await alice.next("peer_info", character_id=bob.id, endpoints=[addr_new])
    back = await bob.next("peer_info", character_id=alice.id, pairing_id=got["pairing_id"])
    assert back["pairing"] == "location"


async def test_party_members_are_paired_wherever_they_stand(
    server: MasterServer, make_player: MakePlayer
) -> None:
    _, sel_a, addr_a = node()
    _, sel_b, addr_b = node()
    _, sel_c, addr_c = node()
    alice = await make_player(select=sel_a)
    bob = await make_player(select=sel_b)
    carol = await make_player(select=sel_c)
    await carol.next("peer_info", character_id=alice.id)  # (paired by location, for now)
    await bob.request("move", to_location_id=2)
    await carol.request("move", to_location_id=2)
    assert carol.box is not None
    heard = len(carol.box.all)  # what she heard while she stood at Alice's place
    await alice.lead_party_with(bob)
    got = await alice.next("peer_info", character_id=bob.id, pairing="party")
    assert got["endpoints"] == [addr_b]
    back = await bob.next("peer_info", character_id=alice.id, pairing="party")
    assert back["pairing_id"] == got["pairing_id"] and back["endpoints"] == [addr_a]
    status, entry = await alice.rest("GET", f"/api/peers/{bob.id}")
    assert entry["paired"] is True and entry["pairing"] == "party"
    # Carol, at Bob's place but not in the party, hears nothing of Alice
    await barrier(carol)
    assert leaks(carol, addr_a, since=heard) == []
    assert addr_c  # (she is paired with Bob by location, not with Alice)


async def test_whisper_pairing_on_demand(
    tmp_path: Path, web: aiohttp.ClientSession, game_clock: FakeClock
) -> None:
    settings = game_settings(
        tmp_path / "data", whisper_pair_ttl=300.0, pair_rate=0.001, pair_burst=3
    )
    async with MasterServer(settings=settings, clock=game_clock) as lobby:
        _, sel_a, addr_a = node()
        _, sel_b, addr_b = node()
        alice = await new_player(lobby.url, web, select=sel_a)
        bob = await new_player(lobby.url, web, select=sel_b)
        await bob.request("move", to_location_id=2)
        await barrier(alice)
        status, entry = await alice.rest("POST", f"/api/peers/{bob.id}/pair")
        assert status == 200, entry
        assert entry["paired"] is True and entry["pairing"] == "whisper"
        assert entry["endpoints"] == [addr_b]
        # both were told, with the pairing id of the answer
        to_alice = await alice.next("peer_info", character_id=bob.id, pairing="whisper")
        to_bob = await bob.next("peer_info", character_id=alice.id, pairing="whisper")
        assert to_alice["pairing_id"] == to_bob["pairing_id"] == entry["pairing_id"]
        assert to_bob["endpoints"] == [addr_a]
        status, again = await bob.rest("GET", f"/api/peers/{alice.id}")
        assert again["pairing"] == "whisper" and again["pairing_id"] == entry["pairing_id"]
        # while it lasts, a renewal reaches the whisper partner
        _, sel_new, addr_new = node()
        await bob.client.select(bob.id, **sel_new)
        await alice.next("peer_info", character_id=bob.id, endpoints=[addr_new])
        # it ends: no more addresses
        game_clock.advance(301)
        status, entry = await alice.rest("GET", f"/api/peers/{bob.id}")
        assert entry["paired"] is False and entry["candidates"] == []
        _, sel_late, addr_late = node()
        await bob.client.select(bob.id, **sel_late)
        await barrier(alice)
        assert leaks(alice, addr_late) == []

        # refusals: oneself, offline, no registered node, too fast
        status, err = await alice.rest("POST", f"/api/peers/{alice.id}/pair")
        assert status == 409 and err["code"] == "conflict"
        assert (await alice.rest("POST", "/api/peers/987654/pair"))[0] == 404
        plain = await new_player(lobby.url, web)
        await barrier(plain)
        status, err = await plain.rest("POST", f"/api/peers/{bob.id}/pair")
        assert status == 409 and err["code"] == "conflict"
        status, err = await alice.rest("POST", f"/api/peers/{bob.id}/pair")
        assert status == 429 and err["code"] == "rate_limited"
        for p in (alice, bob, plain):
            await p.disconnect()


async def test_candidates_are_validated_strictly(
    tmp_path: Path, web: aiohttp.ClientSession
) -> None:
    settings = game_settings(tmp_path / "data", allow_loopback_candidates=False)
    async with MasterServer(settings=settings, clock=FakeClock()) as lobby:
        player = await new_player(lobby.url, web, connect=False)
        _, base, _ = node()
        del base["endpoints"]
        malformed = [  # not the shape of an address: 422 validation_error
            {"endpoints": ["peer.example:4000"]},  # a name, not an address
            {"endpoints": ["[192.0.2.1]:4000"]},
            {"candidates": [srflx("peer.example", 4000)]},
            {"candidates": [srflx("fe80::1%eth0", 4000)]},
            {"candidates": [{**srflx("198.51.100.1", 4000), "kind": "prflx"}]},
            {"candidates": [{**srflx("198.51.100.1", 4000), "port": 0}]},
            {"candidates": [{**srflx("198.51.100.1", 4000), "priority": 2**31}]},
            {"candidates": [{**srflx("198.51.100.1", 4000), "extra": 1}]},
            {"candidates": [srflx("198.51.100.1", 4000 + i) for i in range(9)]},
        ]
        refused = [  # an address the lobby will not hand to anyone: 403 forbidden
            {"endpoints": ["127.0.0.1:4000"]},  # loopback, lobby not in loopback mode
            {"candidates": [srflx("0.0.0.0", 4000)]},  # noqa: S104 - an address value
            {"candidates": [srflx("224.0.0.251", 5353)]},
            {"candidates": [srflx("169.254.1.1", 4000)]},
            {"candidates": [srflx("::1", 4000)]},
            {"candidates": [srflx("ff02::1", 4000)]},
        ]
        cases = ((malformed, (422, "validation_error")), (refused, (403, "forbidden")))
        for extras, expected in cases:
            for extra in extras:
                status, err = await player.rest(
                    "POST", "/api/characters/select", {"character_id": player.id, **base, **extra}
                )
                assert (status, err["code"]) == expected, (extra, err)
        accepted = {
            "endpoints": ["198.51.100.2:4000", "[2001:db8::1]:4000"],
            "candidates": [srflx("203.0.113.9", 61000)] * 2,  # duplicates collapse
        }
        status, body = await player.rest(
            "POST", "/api/characters/select", {"character_id": player.id, **base, **accepted}
        )
        assert status == 200, body


def test_loopback_candidates_follow_the_lobbys_own_address(tmp_path: Path) -> None:
    assert game_settings(tmp_path).loopback_candidates  # tests: 127.0.0.1
    public = game_settings(tmp_path, host="0.0.0.0")  # noqa: S104 - a setting, not a bind
    assert not public.loopback_candidates
    assert game_settings(tmp_path, host="0.0.0.0", allow_loopback_candidates=True)  # noqa: S104


async def test_turn_credentials_verify_against_the_secret_and_expire(
    tmp_path: Path, web: aiohttp.ClientSession, game_clock: FakeClock
) -> None:
    settings = game_settings(
        tmp_path / "data",
        turn_urls=["turn:turn.example:3478?transport=udp,turns:turn.example:5349"],
        turn_secret="north-wind",  # noqa: S106 - a test secret
        turn_ttl=600.0,
        ice_burst=2,
    )
    async with MasterServer(settings=settings, clock=game_clock) as lobby:
        player = await new_player(lobby.url, web, connect=False)
        status, ice = await player.rest("GET", "/api/turn/credentials")
        assert status == 200, ice
        assert lobby.stun_port is not None
        assert ice["stun_urls"] == [
            f"stun:127.0.0.1:{lobby.stun_port}",
            "stun:turn.example:3478",
        ]
        assert ice["turn_urls"] == [
            "turn:turn.example:3478?transport=udp",
            "turns:turn.example:5349",
        ]
        assert ice["username"] == f"{int(game_clock() + 600)}:{player.id}"
        assert "north-wind" not in json.dumps(ice)
        expiry = verify_turn_rest_credentials(
            "north-wind", ice["username"], ice["password"], now=game_clock()
        )
        assert expiry == ice["expires_at"] and ice["ttl"] == 600.0
        with pytest.raises(StunIntegrityError):  # expired
            verify_turn_rest_credentials(
                "north-wind", ice["username"], ice["password"], now=game_clock() + 600
            )
        with pytest.raises(StunIntegrityError):  # another secret
            verify_turn_rest_credentials(
                "south-wind", ice["username"], ice["password"], now=game_clock()
            )
        with pytest.raises(StunError):
            verify_turn_rest_credentials("north-wind", "nobody", ice["password"], now=0)
        # rate limited per account; without a session: 401
        await player.rest("GET", "/api/turn/credentials")
        status, err = await player.rest("GET", "/api/turn/credentials")
        assert status == 429 and err["code"] == "rate_limited"
        async with web.get(f"{lobby.url}/api/turn/credentials") as resp:
            assert resp.status == 401
            assert (await resp.json())["code"] == "unauthorized"


async def test_without_turn_the_answer_names_the_lobbys_stun_only(
    server: MasterServer, make_player: MakePlayer
) -> None:
    player = await make_player(connect=False)
    status, ice = await player.rest("GET", "/api/turn/credentials")
    assert status == 200
    assert ice["stun_urls"] == [f"stun:127.0.0.1:{server.stun_port}"]
    assert ice["turn_urls"] == [] and ice["username"] is None and ice["password"] is None
    for path in ("/api/peers/1", "/api/peers?name=x", "/api/turn/credentials"):
        status, err, _ = await player.client.call("GET", path, token="")
        assert status == 401, path


def test_turn_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="turn_secret"):
        game_settings(tmp_path, turn_urls=["turn:a.example:3478"])
    with pytest.raises(ValueError, match="turn"):
        game_settings(tmp_path, turn_urls=["http://a.example"], turn_secret="s")  # noqa: S106


def test_the_pairing_book_expires_forgets_and_indexes() -> None:
    book = PairingBook(ttl=10.0)
    first = book.whisper(1, 2, now=0.0)
    book.whisper(1, 3, now=5.0)
    assert book.whispering(2, 1, now=9.0) == first
    assert book.whisper_partners(1, now=9.0) == [2, 3]
    assert book.whispering(1, 2, now=10.0) is None  # expired, and dropped
    assert book.whisper_partners(1, now=10.0) == [3] and len(book) == 1
    renewed = book.whisper(3, 1, now=14.0)
    assert renewed != first and book.whispering(1, 3, now=23.0) == renewed
    book.forget(3)
    assert book.whisper_partners(1, now=0.0) == [] and len(book) == 0


async def test_sixteen_candidates_travel_and_endpoints_stay_readable_by_1_0(
    server: MasterServer, make_player: MakePlayer
) -> None:
    _, sel_a, _ = node(*(srflx("198.51.100.7", 41000 + i) for i in range(8)))
    sel_a["endpoints"] = [f"127.0.0.1:{42000 + i}" for i in range(8)]
    _, sel_b, _ = node()
    alice = await make_player(select=sel_a)
    bob = await make_player(select=sel_b)
    got = await bob.next("peer_info", character_id=alice.id)
    assert len(got["candidates"]) == 16
    # the best 8 (the host ones) as endpoints: at most what a 1.0 reader accepts
    assert got["endpoints"] == sel_a["endpoints"]
    await alice.disconnect()
