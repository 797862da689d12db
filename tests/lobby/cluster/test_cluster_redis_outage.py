"""Redis goes away and comes back: the lobbies keep serving, then share again."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import aiohttp
import pytest

from lobby import MasterServer
from tests.lobby.cluster.conftest import Player, join, unique
from tests.lobby.cluster.procs import RedisServer, missing_programs
from tests.lobby.support import ApiClient, fast_settings

pytestmark = pytest.mark.cluster


async def test_a_redis_restart_degrades_to_one_process_each_then_heals(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    if "redis-server" in missing_programs():
        pytest.skip("not installed: redis-server (Debian package redis-server)")
    redis = RedisServer().start()
    servers: list[MasterServer] = []
    players: list[Player] = []
    try:
        for i in range(2):
            settings = fast_settings(
                tmp_path / f"data{i}",
                database_url=f"sqlite:///{tmp_path / 'shared.sqlite3'}",
                redis_url=redis.url,
                ticket_key_file=tmp_path / "ticket.pem",
                cluster_process_id=f"in-process-{i}",
                cluster_heartbeat=0.1,
                cluster_presence_ttl=1.0,
            )
            server = MasterServer(settings=settings)
            await server.start()
            servers.append(server)
        a = await join(http, servers[0].url, unique("out"), "Verdant Pact")
        b = await join(http, servers[1].url, unique("out"), "Verdant Pact")
        players += [a, b]
        await a.send("chat", content="before")
        await b.hears({"before"})

        redis.stop()
        # each lobby goes on alone: its own players chat, logins still have a budget ...
        await a.send("chat", content="alone")
        await a.hears({"alone"})
        api = ApiClient(servers[1].url, http)
        name = unique("out")
        await api.register(name)
        status, body, _ = await api.call(
            "POST", "/api/auth/login", {"username": name, "password": "wrong password"}
        )
        assert (status, body["code"]) == (401, "invalid_credentials")
        assert await api.login(name)
        # ... and what must not be changed on a stale view is refused, not corrupted
        await a.send("party_create", message_id="pc")
        refused = await a.inbox.next(lambda m: m.get("ref_id") == "pc")
        assert refused["type"] == "error" and refused["error_code"] == "unavailable"

        redis.start(same_port=True)  # empty: every key and subscription is gone
        # the lobbies resubscribe and write their shares again: chat crosses again
        n = 0
        async with asyncio.timeout(30):
            while True:
                n += 1
                await a.send("chat", content=f"back {n}")
                try:
                    await b.inbox.next(
                        lambda m: m.get("type") == "chat" and m["content"].startswith("back"),
                        wait=0.5,
                    )
                    break
                except TimeoutError:
                    continue  # not healed yet: say it again
        # and the directory is whole again: a relay finds b on the other process
        payload = base64.b64encode(b"x").decode()
        async with asyncio.timeout(30):
            while True:
                n += 1
                await a.send("relay", message_id=f"r{n}", target_id=b.id, payload=payload)
                try:
                    got = await b.inbox.next(lambda m: m.get("type") == "relay", wait=0.5)
                    assert got["sender_id"] == a.id
                    break
                except TimeoutError:
                    continue  # refused as offline until b's process wrote its share again
    finally:
        for p in players:
            await p.close()
        for server in servers:
            await server.stop()
        redis.stop()
