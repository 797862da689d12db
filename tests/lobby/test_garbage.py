"""Seeded garbage at every endpoint and at the WebSocket: always a 4xx / ERROR, never a crash."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from lobby import MasterServer
from tests.lobby.support import ApiClient, aiohttp_inbox, ws_url

Player = Callable[..., Awaitable[tuple[ApiClient, dict[str, Any]]]]

_ATOMS: list[Any] = [
    None, True, False, 0, -1, 2**63, 2**64, 1.5, -0.0, 1e308, "", "x", "é" * 40, "\x00",
    "a" * 3000, [], {}, [1, "2"], {"type": "chat"}, "Crimson Covenant", 1,
]  # fmt: skip
_KEYS = [
    "username", "password", "name", "faction", "character_class", "class", "character_id",
    "peer_public_key", "box_key", "endpoints", "type", "content", "message_id", "version",
    "timestamp", "sender_id", "channel", "to_location_id", "extra",
]  # fmt: skip


def _value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth < 2 and roll < 0.15:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if depth < 2 and roll < 0.3:
        return _object(rng, depth + 1)
    return rng.choice(_ATOMS)


def _object(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    return {rng.choice(_KEYS): _value(rng, depth) for _ in range(rng.randint(0, 5))}


def _bodies(rng: random.Random, count: int) -> list[bytes]:
    out: list[bytes] = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.7:
            out.append(json.dumps(_object(rng)).encode())
        elif kind < 0.85:
            out.append(json.dumps(_value(rng)).encode())
        else:
            out.append(bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40))))
    return out


async def test_rest_garbage_gets_json_4xx(lobby: MasterServer, player: Player) -> None:
    alice, hero = await player("alice")
    rng = random.Random(20261126)
    for ep in lobby.ctx.api.endpoints:
        if ep.path == "/api/auth/logout":
            continue  # would end the session the rest of the loop uses
        path = re.sub(r"\{[^}]+\}", lambda _: rng.choice(["0", "x", "99999", "-5"]), ep.path)
        for body in _bodies(rng, 15):
            status, answer, _ = await alice.call(
                ep.method, path, data=body, headers={"Content-Type": "application/json"}
            )
            assert status < 500, (ep.method, path, body, answer)
            if status >= 400:
                assert set(answer) == {"code", "message", "details"}, answer
    # the lobby still works for everyone
    status, listed, _ = await alice.call("GET", "/api/characters")
    assert status == 200 and [c["id"] for c in listed["characters"]] == [hero["id"]]


async def test_ws_garbage_gets_errors_and_the_socket_stays_up(
    lobby: MasterServer, player: Player, http: aiohttp.ClientSession
) -> None:
    alice, _ = await player("alice")
    rng = random.Random(7)
    async with http.ws_connect(ws_url(lobby.url), headers=alice.headers()) as ws:
        inbox = aiohttp_inbox(ws)
        sent = 0
        for body in _bodies(rng, 40):
            text = body.decode("utf-8", errors="replace")
            await ws.send_str(text)
            sent += 1
            # every frame gets exactly one answer (an ERROR, or the echo of a valid chat)
            got = await inbox.next(lambda m: m["type"] in ("error", "chat", "heartbeat", "ack"))
            if got["type"] == "error":
                assert got["error_code"], got
        await ws.send_str(json.dumps({"type": "heartbeat", "message_id": "end"}))
        assert (await inbox.next_type("heartbeat"))["reply_to"] == "end"
        assert not ws.closed and sent == 40
