"""Every endpoint refuses a missing, revoked or expired token and another player's character."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import websockets
from websockets.asyncio.client import connect as ws_connect

from lobby import MasterServer
from tests.lobby.support import ApiClient, FakeClock, close_code, websockets_inbox, ws_url

Player = Callable[..., Awaitable[tuple[ApiClient, dict[str, Any]]]]


def _path(template: str, character_id: int) -> str:
    return re.sub(r"\{[^}]+\}", str(character_id), template)


async def _ws_status(url: str, headers: dict[str, str]) -> int:
    try:
        async with ws_connect(url, additional_headers=headers):
            return 101
    except websockets.InvalidStatus as exc:
        body = json.loads(exc.response.body or b"{}")
        assert body["code"] in ("unauthorized", "session_expired")
        return exc.response.status_code


async def test_every_endpoint_refuses_bad_tokens(
    lobby: MasterServer, player: Player, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    alice, a_char = await player("alice")
    revoked = alice.token
    assert revoked is not None
    status, _, _ = await alice.call("POST", "/api/auth/logout")
    assert status == 200
    await alice.login("alice")
    expired = alice.token
    assert expired is not None
    clock.advance(lobby.settings.session_ttl + 1)

    protected = [e for e in lobby.ctx.api.endpoints if e.auth]
    assert {(e.method, e.path) for e in protected} >= {
        ("POST", "/api/auth/logout"),
        ("GET", "/api/characters"),
        ("POST", "/api/characters"),
        ("POST", "/api/characters/select"),
        ("DELETE", "/api/characters/{character_id}"),
    }
    for label, token in (("none", ""), ("revoked", revoked), ("expired", expired)):
        for ep in protected:
            body = {"character_id": a_char["id"]} if ep.request_model is not None else None
            status, err, _ = await alice.call(
                ep.method, _path(ep.path, a_char["id"]), body, token=token
            )
            assert status == 401, (label, ep.method, ep.path, err)
            assert err["code"] in ("unauthorized", "session_expired"), (label, ep.path)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        assert await _ws_status(ws_url(lobby.url), headers) == 401, label
    # an unknown scheme or a malformed header is no token either
    status, err, _ = await alice.call(
        "GET", "/api/characters", token="", headers={"Authorization": "Basic abc"}
    )
    assert status == 401


async def test_another_players_character_is_refused_not_revealed(
    lobby: MasterServer, player: Player
) -> None:
    alice, a_char = await player("alice")
    bob, b_char = await player("bob", "Azure Syndicate")
    missing_id = b_char["id"] + 1000

    answers = {}
    for cid in (b_char["id"], missing_id):
        status, sel, _ = await alice.call("POST", "/api/characters/select", {"character_id": cid})
        status2, dele, _ = await alice.call("DELETE", f"/api/characters/{cid}")
        assert (status, status2) == (404, 404)
        answers[cid] = (sel["code"], sel["message"], dele["code"], dele["message"])
    # the same answer whether the character exists (someone else's) or not
    assert answers[b_char["id"]] == answers[missing_id]
    assert answers[missing_id][0] == "not_found"

    # any path id that cannot be a character is a 404 too
    for raw in ("abc", "-1", "1.5", "9" * 30):
        status, err, _ = await alice.call("DELETE", f"/api/characters/{raw}")
        assert (status, err["code"]) == (404, "not_found"), raw

    # Bob's character is untouched and still Bob's alone
    status, listed, _ = await bob.call("GET", "/api/characters")
    assert [c["id"] for c in listed["characters"]] == [b_char["id"]]
    status, listed, _ = await alice.call("GET", "/api/characters")
    assert [c["id"] for c in listed["characters"]] == [a_char["id"]]
    # the generic endpoint loop: every endpoint whose path or body names a character
    for ep in lobby.ctx.api.endpoints:
        names_character = "{character_id}" in ep.path or (
            ep.request_model is not None and "character_id" in ep.request_model.model_fields
        )
        if not ep.auth or ep.admin or not names_character:  # admin: 403 (tests/lobby/test_admin)
            continue
        body = {"character_id": b_char["id"]} if ep.request_model is not None else None
        status, err, _ = await alice.call(ep.method, _path(ep.path, b_char["id"]), body)
        assert status == 404, (ep.method, ep.path, err)


@pytest.mark.parametrize("where", ["header", "query"])
async def test_ws_accepts_a_valid_token(lobby: MasterServer, player: Player, where: str) -> None:
    alice, _ = await player("alice")
    url = ws_url(lobby.url)
    headers = alice.headers()
    if where == "query":
        url, headers = f"{url}?token={alice.token}", {}
    async with ws_connect(url, additional_headers=headers) as ws:
        await ws.send(json.dumps({"type": "heartbeat", "message_id": "x1"}))
        data = await websockets_inbox(ws).next_type("heartbeat")
        assert data["reply_to"] == "x1"


async def test_logout_closes_the_sessions_websocket(
    lobby: MasterServer, player: Player, http: aiohttp.ClientSession
) -> None:
    alice, _ = await player("alice")
    async with http.ws_connect(ws_url(lobby.url), headers=alice.headers()) as ws:
        status, _, _ = await alice.call("POST", "/api/auth/logout")
        assert status == 200
        assert await close_code(ws) == 1000


async def test_expired_session_closes_its_websocket(
    lobby: MasterServer, player: Player, clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    alice, _ = await player("alice")
    async with http.ws_connect(ws_url(lobby.url), headers=alice.headers()) as ws:
        clock.advance(lobby.settings.session_ttl + 1)
        await lobby.run_maintenance()
        assert await close_code(ws) == 1008
