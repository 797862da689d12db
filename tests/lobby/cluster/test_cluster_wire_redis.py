"""The cluster's own Redis connections (lobby.cluster_wire) against a real redis-server.

The stream, followed over the reader's connection: every entry is handed over once
and in the stream's order, in replies that arrive in many pieces, across a connection
Redis kills (the reader reconnects and reads on from the last entry it handed over),
and with a user, a password and a database number. The command link: overlapping
batches answered in order, a killed connection failing its batch, the next one
reconnecting, the login and the database (also for batches that come while it logs in),
and a link without a timeout waiting out a slow Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import pytest
import redis.asyncio as aioredis

from lobby import cluster
from lobby.broker import Audience
from lobby.cluster_limits import RedisBuckets
from lobby.cluster_stream import ClusterStream
from lobby.cluster_wire import CommandLink, LeanTarget, RespError, command
from tests.lobby.cluster.procs import RedisServer
from tests.lobby.support import fast_settings

pytestmark = pytest.mark.cluster

_keys = itertools.count()


class Follower:
    """:meth:`ClusterStream.follow` as a task, recording what it hands over."""

    def __init__(self, stream: ClusterStream) -> None:
        self.stream = stream
        self.seen: list[tuple[str, str, str]] = []
        self.recovered = 0
        self._changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def _handle(self, entry_id: str, kind: str, data: str) -> None:
        self.seen.append((entry_id, kind, data))
        self._changed.set()

    async def _recover(self) -> None:
        self.recovered += 1
        self._changed.set()

    def start(self, last: str) -> None:
        self.task = asyncio.create_task(self.stream.follow(last, self._handle, self._recover, 0.05))

    async def until(self, done: Callable[[], bool]) -> None:
        async with asyncio.timeout(20):
            while not done():
                self._changed.clear()
                await self._changed.wait()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


@contextlib.asynccontextmanager
async def following(url: str) -> AsyncIterator[tuple[aioredis.Redis, Follower]]:
    client = aioredis.Redis.from_pool(
        aioredis.BlockingConnectionPool.from_url(url, decode_responses=True)
    )
    stream = ClusterStream(client, f"test-reader-{next(_keys)}:stream", keep=60.0)
    follower = Follower(stream)
    try:
        follower.start(await stream.newest())
        yield client, follower
    finally:
        await follower.stop()
        await client.aclose()


async def append(client: aioredis.Redis, key: str, entries: list[tuple[str, str]]) -> list[str]:
    pipe = client.pipeline(transaction=False)
    for kind, data in entries:
        pipe.xadd(key, {"k": kind, "d": data})
    return [str(entry_id) for entry_id in await pipe.execute()]


async def reader_connections(client: aioredis.Redis) -> list[dict[str, str]]:
    """The connections blocked in an XREAD (the follower's)."""
    listed = await client.client_list()
    return [c for c in listed if c.get("cmd") == "xread"]


async def test_entries_arrive_once_in_order_also_in_replies_of_many_pieces(
    redis_server: RedisServer,
) -> None:
    async with following(redis_server.url) as (client, follower):
        # small ones, then ones of 300 KB (a reply in many reads), then more than one
        # XREAD returns at a time, each with a text that is not ASCII
        small = [("p", f'all|||\x1f{{"n":{i}}}') for i in range(10)]
        big = [("p", "x" * 300_000 + str(i)) for i in range(4)]
        many = [("n", f"proc\x1ftopic\x1fd\u00e9j\u00e0 {i}") for i in range(2500)]
        ids: list[str] = []
        for batch in (small, big, many):
            ids += await append(client, follower.stream.key, batch)
        await follower.until(lambda: len(follower.seen) >= len(ids))
        assert [entry_id for entry_id, _, _ in follower.seen] == ids
        assert [(k, d) for _, k, d in follower.seen] == small + big + many
        assert follower.recovered == 0


async def test_a_killed_connection_is_reopened_and_read_on_from_the_last_entry(
    redis_server: RedisServer,
) -> None:
    async with following(redis_server.url) as (client, follower):
        first = await append(client, follower.stream.key, [("p", f"before {i}") for i in range(5)])
        await follower.until(lambda: len(follower.seen) == 5)  # its XREADs have run
        (reader,) = await reader_connections(client)
        await client.client_kill_filter(_id=reader["id"])
        # written while the reader is away: it gets them after its reconnect, once
        later = await append(client, follower.stream.key, [("p", f"after {i}") for i in range(5)])
        await follower.until(lambda: len(follower.seen) == 10)
        assert [entry_id for entry_id, _, _ in follower.seen] == first + later
        assert follower.recovered == 1
        (again,) = await reader_connections(client)
        assert again["id"] != reader["id"]


async def test_a_user_with_a_password_and_a_database_number(redis_server: RedisServer) -> None:
    admin = aioredis.Redis(port=redis_server.port, decode_responses=True)
    try:
        await admin.acl_setuser(
            "stream-reader", enabled=True, passwords=["+s3cret"], keys=["*"], commands=["+@all"]
        )
        url = f"redis://stream-reader:s3cret@127.0.0.1:{redis_server.port}/7"
        async with following(url) as (client, follower):
            ids = await append(client, follower.stream.key, [("p", "in db 7")])
            await follower.until(lambda: len(follower.seen) == 1)
            assert follower.seen == [(ids[0], "p", "in db 7")]
            (reader,) = await reader_connections(client)
            assert (reader["user"], reader["db"]) == ("stream-reader", "7")
    finally:
        await admin.acl_deluser("stream-reader")
        await admin.aclose()


def _target(server: RedisServer, **auth: Any) -> LeanTarget:
    return LeanTarget("127.0.0.1", server.port, **auth)


async def test_the_command_link_answers_overlapping_batches_in_order(
    redis_server: RedisServer,
) -> None:
    link = CommandLink(_target(redis_server), timeout=10.0)
    key = f"test-link-{next(_keys)}"
    try:
        big = "y" * 500_000  # its reply comes in many reads
        first = link.execute([command("SET", key, big), command("GET", key)])
        second = link.execute([command("INCR", key + ":n"), command("HGET", key, "f")])
        third = link.execute([command("INCR", key + ":n")])
        got = await asyncio.gather(first, second, third)
        assert got[0] == ["OK", big.encode()]
        assert got[1][0] == 1 and isinstance(got[1][1], RespError)
        assert str(got[1][1]).startswith("WRONGTYPE")
        assert got[2] == [2]
    finally:
        link.close()


async def test_a_killed_link_fails_its_batch_and_the_next_one_reconnects(
    redis_server: RedisServer,
) -> None:
    link = CommandLink(_target(redis_server), timeout=10.0)
    admin = aioredis.Redis(port=redis_server.port, decode_responses=True)
    try:
        (link_id,) = await link.execute([command("CLIENT", "ID")])
        # blocked on a list nobody pushes to: the kill lands while it waits for its reply
        waiting = asyncio.ensure_future(
            link.execute([command("BLPOP", f"test-link-{next(_keys)}", "0")])
        )
        async with asyncio.timeout(10):
            # no event to wait on: the state is Redis's own
            while not any(c["cmd"] == "blpop" for c in await admin.client_list()):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await admin.client_kill_filter(_id=str(link_id))
        with pytest.raises(ConnectionError):
            await waiting
        (again,) = await link.execute([command("CLIENT", "ID")])
        assert again != link_id
    finally:
        link.close()
        await admin.aclose()


async def test_the_command_link_logs_in_and_selects_its_database(
    redis_server: RedisServer,
) -> None:
    admin = aioredis.Redis(port=redis_server.port, decode_responses=True)
    link = CommandLink(_target(redis_server, db=5, username="link", password="pw"), 10.0)
    try:
        await admin.acl_setuser(
            "link", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all"]
        )
        assert await link.execute([command("ACL", "WHOAMI"), command("CLIENT", "INFO")]) == [
            b"link",
            ANY_DB5,
        ]
        link.close()
        wrong = CommandLink(_target(redis_server, username="link", password="nope"), 10.0)
        with pytest.raises(RespError, match="WRONGPASS"):
            await wrong.execute([command("PING")])
    finally:
        link.close()
        await admin.acl_deluser("link")
        await admin.aclose()


class _InDb5:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, bytes) and b" db=5 " in other


ANY_DB5: Any = _InDb5()


async def test_shared_budgets_over_the_link_survive_a_script_flush(
    redis_server: RedisServer,
) -> None:
    """RedisBuckets over the command link: one budget, and a Redis that lost its scripts
    (a restart, SCRIPT FLUSH) is sent them again."""
    client = aioredis.Redis(port=redis_server.port, decode_responses=True)
    link = CommandLink(_target(redis_server), timeout=10.0)
    prefix = f"test-link-{next(_keys)}"
    buckets = RedisBuckets(client, prefix, link)
    try:
        assert await buckets.take("a", 1.0, 0.5, 2.0, now=100.0) == 0.0
        await client.script_flush()
        assert await buckets.take("a", 1.0, 0.5, 2.0, now=100.0) == 0.0
        assert await buckets.take("a", 1.0, 0.5, 2.0, now=100.0) == pytest.approx(2.0)
        await client.script_flush()
        takes = [("a", 1.0, 0.5, 2.0), ("b", 1.0, 0.5, 2.0)]
        assert await buckets.take_each(takes, now=101.0) == pytest.approx(1.0)
        # the same budget as the pool's path sees
        pooled = RedisBuckets(client, prefix)
        assert await pooled.take("b", 1.0, 0.5, 2.0, now=101.0) == 0.0
        assert await pooled.take("b", 1.0, 0.5, 2.0, now=101.0) == pytest.approx(2.0)
    finally:
        link.close()
        await client.aclose()


async def test_a_batch_left_unanswered_drops_the_link_which_connects_again(
    redis_server: RedisServer,
) -> None:
    """Redis that does not answer within the link's timeout (here: a BLPOP that never
    returns) costs that batch, not the link: the next batch gets a new connection."""
    link = CommandLink(_target(redis_server), timeout=0.3)
    try:
        (first,) = await link.execute([command("CLIENT", "ID")])
        with pytest.raises(ConnectionError):
            await link.execute([command("BLPOP", f"test-link-{next(_keys)}", "0")])
        (second,) = await link.execute([command("CLIENT", "ID")])
        assert second != first
    finally:
        link.close()
    with pytest.raises(ConnectionError, match="closed"):
        await link.execute([command("PING")])


@pytest.mark.parametrize("login", ["password", "database", "both"])
async def test_batches_arriving_while_the_link_logs_in_wait_for_its_login(
    redis_server: RedisServer, login: str
) -> None:
    """Callers that come while a fresh link connects (at every step of it, one per loop
    iteration) are written only after its AUTH and SELECT are answered: each runs as the
    link's user (a Redis that requires a password would refuse one written before the
    AUTH with NOAUTH), and every XADD lands in the link's database, not in database 0."""
    admin = aioredis.Redis(port=redis_server.port, decode_responses=True)
    user, db = f"login-{next(_keys)}", 0 if login == "password" else 6
    auth: dict[str, Any] = {"db": db}
    if login != "database":
        await admin.acl_setuser(
            user, enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all"]
        )
        auth |= {"username": user, "password": "pw"}
    link = CommandLink(_target(redis_server, **auth), timeout=10.0)
    key = f"test-link-{next(_keys)}"
    callers = 200

    async def add(i: int) -> Any:
        for _ in range(i):  # arrive on the i-th loop iteration after the first caller
            await asyncio.sleep(0)
        return await link.execute(
            [command("XADD", key, "*", "n", str(i)), command("ACL", "WHOAMI")]
        )

    try:
        replies = await asyncio.gather(*(add(i) for i in range(callers)))
        assert [r for r, _ in replies if not isinstance(r, bytes)] == []
        # each ran as the link's user (one written before the AUTH would run as default)
        assert {whoami for _, whoami in replies} == {
            user.encode() if login != "database" else b"default"
        }
        in_db = aioredis.Redis(port=redis_server.port, db=db, decode_responses=True)
        try:
            assert await in_db.xlen(key) == callers
        finally:
            await in_db.aclose()
        if db:
            assert await admin.exists(key) == 0  # nothing went to database 0
    finally:
        link.close()
        if login != "database":
            await admin.acl_deluser(user)
        await admin.aclose()


async def test_a_link_without_a_timeout_waits_for_a_slow_redis_and_writes_once(
    redis_server: RedisServer,
) -> None:
    """The broker writer's link (no timeout): a batch Redis answers only after longer
    than the budgets' link waits is answered, not failed, and runs once; the budgets'
    link (a timeout) gives up on it meanwhile, so a request does not hang on Redis."""
    admin = aioredis.Redis(port=redis_server.port, decode_responses=True)
    writer = CommandLink(_target(redis_server), timeout=None)
    budgets = CommandLink(_target(redis_server), timeout=0.2)
    key = f"test-link-{next(_keys)}"
    try:
        await writer.execute([command("PING")])
        await budgets.execute([command("PING")])
        # writes wait until the pause ends (bounded: 1.5 s)
        await admin.client_pause(1500, all=False)
        slow = asyncio.ensure_future(writer.execute([command("XADD", key, "*", "n", "1")]))
        with pytest.raises(ConnectionError):
            await budgets.execute([command("INCR", key + ":n")])
        assert not slow.done()  # the budgets' timeout has passed: the writer still waits
        async with asyncio.timeout(20):
            (entry_id,) = await slow
        assert isinstance(entry_id, bytes)
        assert [i for i, _ in await admin.xrange(key) or ()] == [entry_id.decode()]
    finally:
        await admin.client_unpause()
        writer.close()
        budgets.close()
        await admin.aclose()


class _RecordingHub:
    """What the broker hands to its hub: pushes delivered at once (``here``, the writer
    gave up on Redis) and pushes read back from the stream."""

    def __init__(self) -> None:
        self.here: list[str] = []
        self.streamed: list[str] = []
        self.changed = asyncio.Event()

    def on_join(self, hook: object) -> None:
        pass  # no presences in this test

    def on_leave(self, hook: object) -> None:
        pass

    def deliver(self, audience: Audience, text: str) -> None:
        self.here.append(text)
        self.changed.set()

    def deliver_push(self, audience: Audience, push: Any) -> None:
        self.streamed.append(str(push))
        self.changed.set()


async def test_the_broker_writer_waits_out_a_slow_redis_and_delivers_a_push_once(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A push whose write Redis answers only after longer than the bounded wait (here
    shortened to 0.2 s) is not given up on: it is not delivered here at once and then
    again from the stream; it arrives once, from the stream, and nothing is dropped."""
    monkeypatch.setattr(cluster, "_POOL_WAIT", 0.2)
    client = await cluster.open_redis(redis_server.url)
    settings = fast_settings(tmp_path, redis_url=redis_server.url, cluster_process_id="slow")
    broker = cluster.RedisBroker(client, settings, time.time)
    hub = _RecordingHub()
    broker.attach(cast(Any, hub))
    try:
        await broker.start()
        await client.client_pause(1500, all=False)  # writes wait until it ends (bounded)
        broker.forward(Audience.everyone(), "slow but once")
        async with asyncio.timeout(20):
            while not hub.streamed and not hub.here:
                hub.changed.clear()
                await hub.changed.wait()
            await broker.flushed()
        assert hub.here == []
        assert len(hub.streamed) == 1 and "slow but once" in hub.streamed[0]
        assert broker.dropped == 0
    finally:
        await client.client_unpause()
        await broker.close()
        await client.aclose()
