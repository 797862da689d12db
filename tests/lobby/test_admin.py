"""The admin API against a real lobby: who may call it, and what each call does."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lobby import MasterServer
from tests.lobby.support import PASSWORD, ApiClient, aiohttp_inbox, fast_settings, signed_up, ws_url


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[MasterServer]:
    settings = fast_settings(tmp_path / "lobby", admin_accounts=["Root"])
    async with MasterServer(settings=settings) as lobby:
        yield lobby


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def make_player(server: MasterServer, http: aiohttp.ClientSession, name: str) -> Any:
    client = ApiClient(server.url, http)
    return client, await client.play(name, "Azure Syndicate", "Mage")


async def close_of(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    """The close frame of ``ws`` (messages before it are skipped)."""
    while True:
        msg = await asyncio.wait_for(ws.receive(), 10)
        if msg.type != aiohttp.WSMsgType.TEXT:
            assert msg.type == aiohttp.WSMsgType.CLOSE, msg
            return msg


async def test_every_admin_endpoint_is_401_without_token_and_403_for_players(
    server: MasterServer, http: aiohttp.ClientSession
) -> None:
    endpoints = [e for e in server.ctx.api.endpoints if e.path.startswith("/api/admin/")]
    assert len(endpoints) == 9
    player, _ = await make_player(server, http, "mallory")
    for ep in endpoints:
        path = re.sub(r"\{[^}]+\}", "1", ep.path)
        status, body, _ = await player.call(ep.method, path, token="")
        assert status == 401, (ep.method, ep.path, body)
        # no body at all: refused as a non-admin before the body is even read
        status, body, _ = await player.call(ep.method, path)
        assert status == 403, (ep.method, ep.path, body)
        assert body["code"] == "forbidden"
    doc = (await player.call("GET", "/api/openapi.json"))[1]
    for ep in endpoints:
        op = doc["paths"][ep.path][ep.method.lower()]
        assert "403" in op["responses"] and op["tags"] == ["admin"]


async def test_inspect_announce_kick_ban_unban_revoke(
    server: MasterServer, http: aiohttp.ClientSession
) -> None:
    root = ApiClient(server.url, http)
    await root.register("root")  # "Root" in the settings: names are case-insensitive
    await root.login("root")
    bob, b_char = await make_player(server, http, "bob")
    carol, c_char = await make_player(server, http, "carol")
    async with (
        http.ws_connect(ws_url(server.url), headers=bob.headers()) as ws_b,
        http.ws_connect(ws_url(server.url), headers=carol.headers()) as ws_c,
    ):
        b, c = aiohttp_inbox(ws_b), aiohttp_inbox(ws_c)
        status, players, _ = await root.call("GET", "/api/admin/players")
        assert status == 200 and players["players_online"] == 2
        assert players["connections"] == 2
        here = next(loc for loc in players["locations"] if loc["id"] == b_char["location_id"])
        assert {p["character_name"] for p in here["players"]} == {"bobHero", "carolHero"}
        assert all(p["connected"] for p in here["players"])
        assert sum(len(loc["players"]) for loc in players["locations"]) == 2
        assert any(loc["shard_owners"] for loc in players["locations"])

        status, seen, _ = await root.call("GET", f"/api/admin/characters/{b_char['id']}")
        assert status == 200 and seen["username"] == "bob" and seen["online"]
        assert seen["character"]["gold"] == b_char["gold"] and not seen["banned"]
        assert [s["connected"] for s in seen["sessions"]] == [True]
        assert (await root.call("GET", "/api/admin/characters/99999"))[0] == 404

        status, out, _ = await root.call(
            "POST",
            "/api/admin/announcements",
            {"content": "restart at noon", "priority": "warning"},
        )
        assert status == 201 and out["recipients"] == 2
        for inbox in (b, c):
            got = await inbox.next_type("world_announcement")
            assert got["content"] == "restart at noon" and got["priority"] == "warning"
            assert got["sender_name"] == "root"

        status, kicked, _ = await root.call("POST", f"/api/admin/characters/{b_char['id']}/kick")
        assert status == 200 and len(kicked["revoked_sessions"]) == 1
        close = await close_of(ws_b)
        assert (close.data, close.extra) == (1008, "kicked by an admin")
        assert (await bob.call("GET", "/api/characters"))[0] == 401  # the token is revoked

        carol_account = (await root.call("GET", f"/api/admin/characters/{c_char['id']}"))[1][
            "account_id"
        ]
        status, banned, _ = await root.call(
            "POST", f"/api/admin/accounts/{carol_account}/ban", {"reason": "botting"}
        )
        assert status == 200 and banned["banned"] and banned["banned_by"] == "root"
        assert len(banned["revoked_sessions"]) == 1
        close = await close_of(ws_c)
        assert (close.data, close.extra) == (1008, "account banned")

    status, body, _ = await carol.call(
        "POST", "/api/auth/login", {"username": "carol", "password": PASSWORD}
    )
    assert status == 403 and body["details"]["reason"] == "banned"
    status, body, _ = await carol.call(
        "POST", "/api/auth/login", {"username": "carol", "password": "not " + PASSWORD}
    )
    assert status == 401  # a wrong password learns nothing about the ban
    bans = (await root.call("GET", "/api/admin/bans"))[1]["bans"]
    assert [(x["account_id"], x["reason"]) for x in bans] == [(carol_account, "botting")]
    assert (await root.call("GET", f"/api/admin/characters/{c_char['id']}"))[1]["banned"]

    status, out, _ = await root.call("DELETE", f"/api/admin/accounts/{carol_account}/ban")
    assert status == 200 and out["banned"] is False
    assert (await root.call("GET", "/api/admin/bans"))[1]["bans"] == []
    await carol.login("carol")
    await carol.login("carol")  # two sessions
    status, out, _ = await root.call("POST", f"/api/admin/accounts/{carol_account}/revoke")
    assert status == 200 and len(out["revoked_sessions"]) == 2
    assert (await carol.call("GET", "/api/characters"))[0] == 401
    assert (await root.call("POST", "/api/admin/accounts/99999/revoke"))[0] == 404
    status, body, _ = await root.call("POST", "/api/admin/accounts/99999/ban", {"reason": "x"})
    assert status == 404 and body["code"] == "not_found"


async def test_world_view_and_validation(server: MasterServer, http: aiohttp.ClientSession) -> None:
    root = await signed_up(server.url, http, "root")
    status, out, _ = await root.call("GET", "/api/admin/world")
    assert status == 200
    world = out["world"]
    assert world["current_reality"] in world["realities"]
    assert len(world["shards"]) == len(server.ctx.world.shards)
    assert world["next_aetherfall_at"] > out["now"] - 1
    status, body, _ = await root.call("POST", "/api/admin/announcements", {"content": "  "})
    assert status == 422 and body["code"] == "validation_error"
    status, body, _ = await root.call(
        "POST", "/api/admin/accounts/1/ban", data=json.dumps({"reason": "x", "extra": 1}).encode()
    )
    assert status == 422


async def test_a_ban_survives_a_restart(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path / "lobby", admin_accounts=["root"])
    async with aiohttp.ClientSession() as http:
        async with MasterServer(settings=settings) as server:
            root = await signed_up(server.url, http, "root")
            eve = ApiClient(server.url, http)
            account = (await eve.register("eve"))["account_id"]
            status, _, _ = await root.call(
                "POST", f"/api/admin/accounts/{account}/ban", {"reason": "spam"}
            )
            assert status == 200
        async with MasterServer(settings=settings) as server:
            eve = ApiClient(server.url, http)
            status, body, _ = await eve.call(
                "POST", "/api/auth/login", {"username": "eve", "password": PASSWORD}
            )
            assert status == 403 and body["details"]["reason"] == "banned"


async def test_admin_page_files_are_served_from_the_package_only(
    server: MasterServer, http: aiohttp.ClientSession
) -> None:
    async with http.get(server.url + "/admin") as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        assert 'src="/admin/admin.js"' in await resp.text()
    async with http.get(server.url + "/admin/admin.js") as resp:
        assert resp.status == 200 and resp.content_type == "text/javascript"
    async with http.get(server.url + "/admin/", allow_redirects=False) as resp:
        assert resp.status == 308 and resp.headers["Location"] == "/admin"
    for path in ("/admin/nope.js", "/admin/..%2Fpages.py", "/admin/%2e%2e%2fpages.py"):
        async with http.get(server.url + path) as resp:
            assert resp.status == 404, path
            assert (await resp.json())["code"] == "not_found"
