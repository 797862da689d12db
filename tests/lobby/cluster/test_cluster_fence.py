"""A holder of a cluster lock that stalls past the lock's expiry cannot overwrite newer state.

Two processes' worth of :class:`~lobby.cluster_state.SharedState` (each its own
Redis client and database engine) on one real ``redis-server`` and one SQLite file.
The stall is injected: the first holder waits, inside its change, until the second
has taken the expired lock and written.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from lobby.cluster import RedisBroker, open_redis
from lobby.cluster_state import SharedState
from lobby.storage import Database
from lobby.storage.game_schema import world_meta
from protocol.errors import ErrorCode, LobbyError
from tests.lobby.cluster.procs import RedisServer
from tests.lobby.support import fast_settings

pytestmark = pytest.mark.cluster

KEY = "fence-test"
LOCK_TTL = 0.3


class Process:
    """One lobby process's share: its database engine, broker and the shared state."""

    def __init__(self, db: Database, broker: RedisBroker, client: Any) -> None:
        self.db = db
        self.broker = broker
        self.client = client
        self.seen: list[str | None] = []
        self.state = SharedState(KEY, self._reload)
        self.state.attach(broker, db)

    async def _reload(self) -> None:
        self.seen.append(await stored(self.db))

    async def put(self, value: str) -> None:
        """Write ``value`` the way a service writes under the lock (fenced)."""
        async with self.state.write() as db:
            await db.execute(world_meta.delete().where(world_meta.c.key == KEY))
            await db.execute(world_meta.insert().values(key=KEY, value=json.dumps(value)))


async def stored(db: Database) -> str | None:
    async with db.read() as conn:
        row = (
            await conn.execute(select(world_meta.c.value).where(world_meta.c.key == KEY))
        ).first()
    return None if row is None else str(json.loads(row[0]))


@pytest.fixture
async def processes(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[list[Process]]:
    url = f"sqlite:///{tmp_path / 'fence.sqlite3'}"
    made: list[Process] = []
    try:
        for i in range(2):
            settings = fast_settings(
                tmp_path / f"data{i}",
                redis_url=redis_server.url,
                cluster_process_id=f"fence-{i}",
                cluster_lock_ttl=LOCK_TTL,
            )
            db = await Database.open(url, now=time.time())
            client = await open_redis(redis_server.url)
            made.append(Process(db, RedisBroker(client, settings, time.time), client))
            await made[-1].broker.start()
        yield made
    finally:
        for p in made:
            await p.state.close()
            await p.broker.close()
            await p.client.aclose()
            await p.db.close()


async def test_a_holder_paused_past_its_lock_cannot_overwrite_newer_state(
    processes: list[Process],
) -> None:
    a, b = processes
    async with a.state.change():
        await a.put("first")
    a_holds, b_wrote = asyncio.Event(), asyncio.Event()

    async def stalled_a() -> None:
        async with a.state.change():
            a_holds.set()
            await b_wrote.wait()  # the stall: A's lock expires meanwhile and B takes it
            with pytest.raises(LobbyError) as refused:
                await a.put("stale, from A")
        assert refused.value.code is ErrorCode.UNAVAILABLE

    async def b_after_expiry() -> None:
        await a_holds.wait()
        async with b.state.change():  # waits until A's lock expires
            assert b.seen[-1] == "first"  # B changes the state it re-read under the lock
            await b.put("newer, from B")
        b_wrote.set()

    await asyncio.wait_for(asyncio.gather(stalled_a(), b_after_expiry()), 30)
    assert await stored(a.db) == "newer, from B"
    # A is not locked out for good: its next change re-reads and writes
    async with a.state.change():
        assert a.seen[-1] == "newer, from B"
        await a.put("later, from A")
    assert await stored(b.db) == "later, from A"
