"""Pure parts of the NetworkClient: backoff, nearby view, lobby directory, commands, framing."""

from __future__ import annotations

import random
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mesh.client import NearbyTracker, ReconnectPolicy
from mesh.client.rest import api_error
from mesh.discovery.base import PeerFound, PeerLost
from mesh.discovery.lobby import LobbyDirectory, parse_endpoint
from protocol.crypto import Identity, issue_ticket, public_key_raw
from protocol.errors import CryptoError, ErrorCode
from protocol.messages.characters import CharacterUpdateMessage
from protocol.messages.location import (
    LocationUpdateMessage,
    PlayerJoinedAreaMessage,
    PlayerLeftAreaMessage,
    PositionUpdateMessage,
    Vec3,
)
from protocol.messages.peer import PeerInfoMessage

__all__: list[str] = []


# -- reconnect backoff ---------------------------------------------------------------


def test_backoff_is_bounded_jittered_and_seeded() -> None:
    policy = ReconnectPolicy(initial_delay=0.1, max_delay=2.0, factor=2.0, jitter=0.5, seed=7)
    a = [policy.delay(n, random.Random(7)) for n in range(12)]
    b = [policy.delay(n, random.Random(7)) for n in range(12)]
    assert a == b  # same seed, same schedule
    for n, d in enumerate(a):
        base = min(2.0, 0.1 * 2.0**n)
        assert 0.5 * base <= d <= base
    assert max(a) <= 2.0
    rng = random.Random(1)
    assert policy.delay(10_000, rng) <= 2.0  # no overflow far out


# -- nearby players ----------------------------------------------------------------------


def test_nearby_tracker_follows_messages() -> None:
    t = NearbyTracker()
    t.set_own(1, 5)
    t.observe(PlayerJoinedAreaMessage(character_id=2, character_name="Bo", location_id=5,
                                      level=3, faction="Verdant Pact"), now=10.0)  # fmt: skip
    t.observe(PeerInfoMessage(character_id=3, character_name="Cy", ticket="t", location_id=5,
                              faction="Azure Syndicate"), now=11.0)  # fmt: skip
    assert [p.character_name for p in t.players()] == ["Bo", "Cy"]
    bo = t.get(2)
    assert bo is not None and bo.level == 3 and bo.faction == "Verdant Pact" and bo.last_seen == 10
    t.observe(PositionUpdateMessage(character_id=2, location_id=5, position=Vec3(x=1, y=2, z=3),
                                    velocity=Vec3(x=1), seq=4), now=12.0)  # fmt: skip
    assert bo.position == Vec3(x=1, y=2, z=3) and bo.last_seen == 12.0
    t.observe(CharacterUpdateMessage(character_id=2, character_name="Bo", health=5, max_health=9,
                                     level=4, location_id=5), now=13.0)  # fmt: skip
    assert bo.level == 4
    t.observe(PlayerLeftAreaMessage(character_id=3, location_id=5, to_location_id=6), now=14.0)
    assert [p.character_name for p in t.players()] == ["Bo"]
    t.observe(LocationUpdateMessage(character_id=2, location_id=6), now=15.0)
    assert t.players() == [] and [p.character_name for p in t.players(6)] == ["Bo"]
    # our own position update and departure are ignored; our own move forgets elsewhere
    assert not t.observe(PositionUpdateMessage(character_id=1, location_id=5,
                                               position=Vec3()), now=16.0)  # fmt: skip
    t.observe(LocationUpdateMessage(character_id=1, location_id=6), now=17.0)
    assert t.own_location_id == 6 and [p.character_name for p in t.players()] == ["Bo"]
    assert t.by_name("bo") is bo


# -- lobby directory -----------------------------------------------------------------------


def _info(
    lobby_key: Ed25519PrivateKey, identity: Identity, cid: int, **kw: object
) -> PeerInfoMessage:
    ticket = issue_ticket(
        lobby_key, character_id=cid, character_name=f"c{cid}", faction="Verdant Pact",
        public_key=identity.public_key, box_key=identity.box_public_key, now=time.time(),
        ttl=600.0,
    )  # fmt: skip
    fields: dict[str, object] = {"endpoints": ["127.0.0.1:4000"], "location_id": 2}
    fields.update(kw)
    return PeerInfoMessage(character_id=cid, character_name=f"c{cid}", ticket=ticket, **fields)


def test_parse_endpoint() -> None:
    assert parse_endpoint("127.0.0.1:9000") == ("127.0.0.1", 9000)
    assert parse_endpoint("[::1]:9000") == ("::1", 9000)
    assert parse_endpoint("host.example:1") == ("host.example", 1)
    for bad in ("nohost", ":9000", "1.2.3.4:0", "1.2.3.4:70000", "1.2.3.4:x"):
        assert parse_endpoint(bad) is None


async def test_lobby_directory_events() -> None:
    key = Ed25519PrivateKey.generate()
    directory = LobbyDirectory(public_key_raw(key))
    events: list[object] = []
    directory.add_listener(events.append)
    ident = Identity.generate()
    async with directory:
        info = _info(key, ident, 7, node_id="ff" * 16)
        found = directory.peer_info(info, now=time.time())
        assert isinstance(found, PeerFound)
        assert found.peer_id == ident.peer_id  # from the verified ticket, not the claim
        assert found.endpoints == (("127.0.0.1", 4000),) and found.source == "lobby"
        assert found.extra["character_id"] == "7" and found.extra["location_id"] == "2"
        assert directory.character_peer(7) == found
        directory.peer_info(info, now=time.time())  # same entry again: no event
        directory.character_left(7)
        assert isinstance(events[-1], PeerLost) and events[-1].peer_id == ident.peer_id
        assert directory.peer_info(_info(key, ident, 7, online=False), now=time.time()) is None
        other = Ed25519PrivateKey.generate()
        with pytest.raises(CryptoError):
            directory.peer_info(_info(other, ident, 8), now=time.time())
    assert [type(e).__name__ for e in events] == ["PeerFound", "PeerLost"]


# -- framing and errors ----------------------------------------------------------------------


def test_api_error_translation() -> None:
    err = api_error(
        "POST", "/x", 409, {"code": "name_taken", "message": "taken", "details": {"a": 1}}
    )
    assert (err.status, err.code, err.message, err.details) == (
        409,
        ErrorCode.NAME_TAKEN,
        "taken",
        {"a": 1},
    )
    odd = api_error("GET", "/y", 502, "gateway")
    assert odd.status == 502 and odd.code == ErrorCode.INTERNAL_ERROR
    unknown = api_error("GET", "/z", 418, {"code": "teapot"})
    assert unknown.code == ErrorCode.BAD_REQUEST and unknown.details["code"] == "teapot"
