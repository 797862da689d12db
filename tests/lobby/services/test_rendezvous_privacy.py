"""No address of a player reaches anyone the lobby has not paired with them, by any route.

The rendezvous rule: a player's candidates (host, server-reflexive, relayed
addresses) go only to the peers the lobby pairs with them (same location, same
party, a whisper target, which is told too). Here a viewer who is none of these
walks every ``GET`` route the lobby publishes (its own OpenAPI document, so a
route added later is walked too) with the target's ids in every path
parameter, and sends every WebSocket request that names the target, while the
target does everything that makes the lobby talk about them (arriving,
chatting, inviting and asking the viewer to trade, renewing their ticket with
new addresses, reconnecting). No body and no message the viewer receives holds
one of the target's addresses, in a field or inside a signed ticket. Then the
viewer joins the target's location: now paired, the addresses do arrive (the
check can see them).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from lobby import MasterServer
from protocol.candidates import CandidateKind, candidate_priority
from protocol.crypto import Identity, b64url_decode, b64url_encode, verify_ticket
from tests.lobby.services.conftest import MakePlayer
from tests.lobby.services.players import GamePlayer
from tests.lobby.support import FakeClock

__all__: list[str] = []

FAR_AWAY = 2
"""A neighbour of the start location: the viewer stands there, unpaired."""


def _select(host: str, srflx: str, relay: str) -> dict[str, Any]:
    """A select body: fresh keys, one host endpoint, a server-reflexive and a relayed candidate."""
    identity = Identity.generate()

    def candidate(kind: CandidateKind, text: str) -> dict[str, Any]:
        address, port = text.rsplit(":", 1)
        return {
            "kind": kind.value,
            "address": address,
            "port": int(port),
            "priority": candidate_priority(kind),
        }

    return {
        "peer_public_key": b64url_encode(identity.public_key),
        "box_key": b64url_encode(identity.box_public_key),
        "endpoints": [host],
        "candidates": [
            candidate(CandidateKind.SRFLX, srflx),
            candidate(CandidateKind.RELAY, relay),
        ],
    }


FIRST = ("10.77.0.5:47001", "203.0.113.77:41234", "198.51.100.77:50000")
RENEWED = ("10.77.0.6:47002", "203.0.113.78:41235", "198.51.100.78:50001")
ADDRESSES = tuple(text.rsplit(":", 1)[0] for text in (*FIRST, *RENEWED))


def _tickets(value: Any) -> Iterator[str]:
    """Every ``ticket`` string anywhere inside a JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "ticket" and isinstance(item, str) and item:
                yield item
            else:
                yield from _tickets(item)
    elif isinstance(value, list):
        for item in value:
            yield from _tickets(item)


def _leaks(value: Any, lobby_key: bytes, now: float) -> list[str]:
    """The target's addresses found in ``value``: in its text, or in a ticket it carries."""
    text = json.dumps(value)
    found = [address for address in ADDRESSES if address in text]
    for ticket in _tickets(value):
        endpoints = verify_ticket(ticket, lobby_key, now=now).endpoints
        found += [f"ticket: {e}" for e in endpoints if any(a in str(e) for a in ADDRESSES)]
    return found


async def _barrier(player: GamePlayer) -> None:
    """Every push queued for ``player`` before now has arrived (the lobby keeps order)."""
    await player.send("heartbeat")
    await player.next("heartbeat")


async def _walk_get_routes(
    viewer: GamePlayer, target: GamePlayer, party_id: str
) -> dict[str, tuple[int, Any]]:
    """Every ``GET`` route of the lobby's OpenAPI document, as ``viewer``, about ``target``."""
    status, spec = await viewer.rest("GET", "/api/openapi.json")
    assert status == 200
    values = {
        "character_id": str(target.id),
        "party_id": party_id,
        "account_id": str(target.character.get("account_id", 1)),
    }
    answers: dict[str, tuple[int, Any]] = {}
    for template, operations in spec["paths"].items():
        if "get" not in operations:
            continue
        path = re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "1"), template)
        queries = [
            p["name"] for p in operations["get"].get("parameters", []) if p.get("in") == "query"
        ]
        if "name" in queries:  # a lookup by name: the target's
            path += f"?name={target.name}"
        answers[template] = await viewer.rest("GET", path)
    return answers


async def test_an_unpaired_viewer_finds_no_address_on_any_route(
    server: MasterServer, make_player: MakePlayer, game_clock: FakeClock
) -> None:
    lobby_key = b64url_decode(server.ctx.key.public_key_b64)
    viewer = await make_player(
        select=_select("10.88.0.5:48001", "203.0.113.88:41000", "198.51.100.88:50000"),
        name="Veraviewer",
    )
    await viewer.request("move", to_location_id=FAR_AWAY)
    target = await make_player(select=_select(*FIRST), name="Tomtarget")
    await _barrier(viewer)

    # the target makes the lobby talk about them, to the viewer among others
    await target.send("chat", content="hello world", channel="global")
    await viewer.next("chat", content="hello world")
    await target.send("faction_chat", content="hello faction")
    await viewer.next("faction_chat", content="hello faction")
    party_id = str((await target.request("party_create"))["details"]["party_id"])
    await target.request("party_invite", target_id=viewer.id)
    await viewer.next("party_invite", party_id=party_id)
    await target.send("trade_request", target_id=viewer.id)
    await target.client.select(target.id, **_select(*RENEWED))
    await target.disconnect()
    await target.connect()
    await _barrier(target)

    # the viewer asks about the target by every route there is
    answers = await _walk_get_routes(viewer, target, party_id)
    assert {"/api/peers/{character_id}", "/api/peers", "/api/party/{party_id}"} <= set(answers)
    status, peer = answers["/api/peers/{character_id}"]
    assert status == 200 and peer["character_id"] == target.id and peer["paired"] is False
    for request in (
        {"msg_type": "trade_request", "target_id": target.id},
        {"msg_type": "party_invite", "target_id": target.id},
        {"msg_type": "relay", "target_id": target.id, "payload": "AAAA"},
    ):
        await viewer.send(**request)
    await _barrier(viewer)

    leaks = {route: _leaks(body, lobby_key, game_clock()) for route, (_, body) in answers.items()}
    assert {route: found for route, found in leaks.items() if found} == {}
    assert viewer.box is not None
    assert [m for m in viewer.box.all if _leaks(m, lobby_key, game_clock())] == []
    assert not [m for m in viewer.box.all if m["type"] == "peer_info"]

    # the control: paired by location, the viewer now gets the current addresses
    await viewer.request("move", to_location_id=target.character["location_id"])
    got = await viewer.next("peer_info", character_id=target.id)
    assert sorted(_leaks(got, lobby_key, game_clock())) == sorted(ADDRESSES[3:])
    status, peer = await viewer.rest("GET", f"/api/peers/{target.id}")
    assert peer["paired"] is True and _leaks(peer, lobby_key, game_clock())
