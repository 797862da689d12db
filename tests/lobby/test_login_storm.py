"""Password hashing never runs on the event loop: logins storm, /api/status keeps answering.

The storm uses argon2id at 8 MiB / 2 passes (tens of milliseconds a hash, enough to
stall a loop that hashed inline), in worker processes and in threads; one test below uses
the production parameters and the default pool.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import insert, select

from lobby import LobbySettings, MasterServer
from lobby.storage import accounts
from tests.lobby.support import PASSWORD, FakeClock, fast_settings, signed_up


@pytest.mark.parametrize("pool", ["process", "thread"])
async def test_status_keeps_answering_during_50_concurrent_logins(
    tmp_path: Path, clock: FakeClock, pool: str
) -> None:
    settings = fast_settings(
        tmp_path / "data",
        argon2_time_cost=2,
        argon2_memory_cost=8192,
        argon2_parallelism=1,
        hash_pool=pool,
    )
    async with (
        MasterServer(settings=settings, clock=clock) as server,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
    ):
        names = [f"storm{i:02d}" for i in range(50)]
        password_hash = await server.ctx.accounts.hashing.hash(PASSWORD)
        async with server.ctx.db.write() as conn:  # setup: 50 accounts with that hash
            await conn.execute(
                insert(accounts),
                [
                    {
                        "username": n,
                        "username_key": n,
                        "password_hash": password_hash,
                        "created_at": clock(),
                    }
                    for n in names
                ],
            )

        async def login(name: str) -> str:
            async with http.post(
                f"{server.url}/api/auth/login", json={"username": name, "password": PASSWORD}
            ) as resp:
                assert resp.status == 200
                return str((await resp.json())["token"])

        storm = asyncio.gather(*(login(n) for n in names))
        answered_during_storm = 0
        # Bounded: the rate limiter's clock is fake, so its burst is all the probe gets.
        while not storm.done() and answered_during_storm < 200:
            async with http.get(f"{server.url}/api/status") as resp:
                assert resp.status == 200
                await resp.json()
            if not storm.done():
                answered_during_storm += 1
        tokens = await storm
        assert len(set(tokens)) == 50
        # /api/status answered while logins were still waiting for their hashes
        assert answered_during_storm >= 1


async def test_production_argon2_parameters(tmp_path: Path, clock: FakeClock) -> None:
    settings = LobbySettings(port=0, data_dir=tmp_path / "data")  # the defaults
    async with (
        MasterServer(settings=settings, clock=clock) as server,
        aiohttp.ClientSession() as http,
    ):
        client = await signed_up(server.url, http, "carefulcarl")
        async with server.ctx.db.read() as conn:
            stored = (await conn.execute(select(accounts.c.password_hash))).scalar_one()
        assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
        assert PASSWORD not in stored
        assert server.ctx.accounts.hashing.mode == "process"  # the default pool
        status, err, _ = await client.call(
            "POST", "/api/auth/login", {"username": "carefulcarl", "password": "wrong one"}
        )
        assert (status, err["code"]) == (401, "invalid_credentials")
