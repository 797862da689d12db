"""Several lobby processes sharing one Redis: pushes, presence and rate-limit budgets.

Turned on by ``redis_url`` (``--redis-url`` / ``SHARDS_REDIS_URL``); without it
the lobby is one process and none of this runs. Each process has an id
(``cluster_process_id``, default ``host:pid:random``) and, in Redis (every key
under ``cluster_prefix``, default ``shards``):

* ``{prefix}:alive:{process}``: set every ``cluster_heartbeat`` seconds with a
  TTL of ``cluster_presence_ttl``. A process that dies (even by ``kill -9``)
  stops renewing it; within ``cluster_presence_ttl + cluster_heartbeat`` every
  other process has dropped its players from the directory, so they are
  "offline" again.
* ``{prefix}:presence:{process}``: a hash ``session id -> [account, character
  id, name, location]`` (JSON) of the presences with a character that process
  holds (its share of the presence directory), kept by the hub's join/leave
  hooks and its moves (:meth:`RedisBroker.moved`). When a process is found dead
  (or leaves), the players at each lost character's location are told
  ``PLAYER_LEFT_AREA`` once, through the stream like any push: every process that
  notices races for ``{prefix}:gone:{process}`` (``SET NX``) and only the winner
  publishes them.
* ``{prefix}:lock:{name}``: a cluster-wide lock (:meth:`RedisBroker.lock`): ``SET NX PX``
  with a random token, released by compare-and-delete, expiring by itself after
  ``cluster_lock_ttl`` if its holder dies (a holder that only stalled is fenced off in
  the database: :mod:`lobby.cluster_state`). Changes to shared state are announced on
  ``{prefix}:notify``.
* ``{prefix}:stream``: the one stream every process writes and reads (``XADD`` /
  ``XREAD``, :mod:`lobby.cluster_stream`): every push (its audience and text),
  the directory's join, move and leave events, the state notifications and the
  hand-overs below. It keeps the reconnect grace plus a margin.

Pushes are sequenced (:attr:`RedisBroker.sequenced`): the hub hands the broker
every push for an :class:`~lobby.broker.Audience`, even those for its own
presences, and each process delivers the pushes as it reads them back from the
stream, in the stream's order, each with its entry id as resume cursor
(:mod:`protocol.resume`). So a client sees pushes in one cluster-wide order,
and one that resumes on any process with the last cursor it saw is replayed
from the stream what its audiences got after it (:meth:`RedisBroker.replay`):
what a ``kill -9`` ed process had queued for it, and what was sent to it
between the kill and its resume. The replay is bounded
(:data:`lobby.cluster_stream.REPLAY_MAX` entries); past that, or when its cursor
is no longer in the stream, the client is told ``replay: gap``.

A session that reconnects to another process (the balancer chose another one)
is handed over: the process that kept it inside its reconnect grace sends what
it queued for it to the new one (delivered after what the new one already
sent, minus what the new one delivered itself or replayed) and forgets it
silently (no leave announcement), or closes its still-open connection as
replaced. (That serves clients without cursors; a client with one is replayed
from the stream.)

The stream is read, and the writer's batches, the chat retry check and the shared
rate-limit budgets are sent, over three connections of the process's own
(:mod:`lobby.cluster_wire`: no pool checkout, no task per read): the reader's, the
writer's (which waits for Redis far longer) and one with a short bounded wait for the
rest; everything else goes through the redis client's pool.

Every process keeps a replica of the directory (character -> process, session
-> process), so the hub's sync calls (``send_to_character``, ``online_elsewhere``)
never wait on Redis. Entries are queued and written by one task in pipelines,
in order, and read by one task. When Redis is unreachable, pushes are delivered
to this process's presences at once (without a cursor), those for other
processes are dropped (counted and logged): a lobby never stalls on its broker.

The rate-limit and login-throttle budgets shared through the same Redis are in
:mod:`lobby.cluster_limits`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lobby.broker import Audience, AudienceKind, Push, Replayed
from lobby.cluster_stream import SEP as _SEP
from lobby.cluster_stream import STREAM_MARGIN, ClusterStream, EntryKind, stream_push
from lobby.cluster_wire import CommandLink, RespError, lean_target
from lobby.cluster_wire import command as resp_command
from protocol.codec import serialize
from protocol.errors import ConfigError, ErrorCode, LobbyError
from protocol.messages import PlayerLeftAreaMessage
from protocol.resume import CursorKey

try:
    from redis.exceptions import RedisError
except ImportError:  # without the "scale" extra nothing here runs (open_redis says so)

    class RedisError(Exception):  # type: ignore[no-redef]
        """Stands in for redis' error class when redis is not installed."""


if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from lobby.config import Clock, LobbySettings
    from lobby.hub import Hub
    from lobby.presence import Presence

__all__ = ["RedisBroker", "default_process_id", "open_redis"]

log = logging.getLogger("lobby.cluster")

_RESYNC_BEATS = 15
"""Every this many heartbeats the directory is written and re-read whole (heals lost events)."""
_LOCK_WAIT = 5.0
"""Seconds to wait for a cluster lock before answering ``unavailable``."""
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_FLUSH_WAIT = 2.0
"""Seconds :meth:`RedisBroker.flushed` waits for the writer at most."""
_WRITE_BATCH = 512
_POOL_SIZE = 64
"""Redis connections of one process (the stream reader holds one)."""
_POOL_WAIT = 5.0
"""Seconds a command waits for a free connection before it fails."""
_WRITE_WAIT = 30.0
"""Seconds the writer's batch waits for Redis's reply before its connection is dropped
(the batch is then delivered here only)."""
_QUEUE_MAX = 100_000
_GONE_CLAIM_TTL = 3600
"""Seconds the claim on a dead process's departures is kept: far past the moment every
other process has noticed the death (a heartbeat TTL); process ids are never reused."""
_PUSH, _EVENT, _NOTIFY, _HANDOVER = (k.value for k in EntryKind)


def default_process_id() -> str:
    """``host:pid:random``: unique per process start, readable in logs."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


async def open_redis(url: str) -> aioredis.Redis:
    """A connected Redis client for ``url`` (:class:`ConfigError` if unusable)."""
    try:
        import redis.asyncio as aioredis
    except ImportError:  # the "scale" extra
        raise ConfigError(
            "redis_url needs the redis package: pip install 'shards-net[scale]'"
        ) from None
    # a bounded pool that makes a command wait for a free connection (the default pool
    # refuses past 100 at once: a reconnect storm's rate-limit checks would all fail)
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=_POOL_SIZE,
        timeout=_POOL_WAIT,
        decode_responses=True,
        health_check_interval=10,
    )
    client = aioredis.Redis.from_pool(pool)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        raise ConfigError(f"cannot reach Redis at {_safe(url)}: {exc}") from None
    return client


def _safe(url: str) -> str:
    """``url`` without a password (for messages and logs)."""
    head, sep, tail = url.rpartition("@")
    if not sep:
        return url
    scheme, _, _ = head.partition("://")
    return f"{scheme}://***@{tail}"


@dataclass(frozen=True, slots=True)
class _Remote:
    process: str
    session_id: int
    character_id: int
    name: str
    location_id: int


class RedisBroker:
    """The cluster's broker (:class:`lobby.broker.Broker`) and presence directory."""

    distributed = True

    def __init__(self, client: aioredis.Redis, settings: LobbySettings, clock: Clock) -> None:
        self._redis = client
        self._clock = clock
        self.process_id = settings.cluster_process_id or default_process_id()
        prefix = settings.cluster_prefix
        self._heartbeat = settings.cluster_heartbeat
        self._ttl = settings.cluster_presence_ttl
        self._lock_ttl_ms = max(1, int(settings.cluster_lock_ttl * 1000))
        self._alive_key = f"{prefix}:alive:{self.process_id}"
        self._alive_pattern = f"{prefix}:alive:*"
        self._alive_prefix = f"{prefix}:alive:"
        self._presence_prefix = f"{prefix}:presence:"
        self._gone_prefix = f"{prefix}:gone:"
        keep = settings.reconnect_grace + STREAM_MARGIN
        self._stream = ClusterStream(client, f"{prefix}:stream", keep)
        target = lean_target(client.connection_pool)
        self.link = None if target is None else CommandLink(target, _POOL_WAIT)
        """This process's own connection for the hot reads (the retry check, the shared
        rate-limit budgets), which a request waits for: bounded by ``_POOL_WAIT``. None:
        they go through the pool."""
        # The writer's own connection waits for Redis far longer than the hot reads do: a
        # batch given up on while Redis may still run it would be delivered here twice,
        # once at once and once from the stream. It is still bounded (_WRITE_WAIT), so a
        # connection that stops answering cannot hold every later push for good.
        self._writer_link = None if target is None else CommandLink(target, _WRITE_WAIT)
        self._lock_prefix = f"{prefix}:lock:"
        self._release: Callable[..., Awaitable[Any]] = client.register_script(_RELEASE_LUA)
        self._watchers: dict[str, list[Callable[[str], None]]] = {}
        self._hub: Hub | None = None
        self._queue: asyncio.Queue[tuple[str, ...]] = asyncio.Queue(_QUEUE_MAX)
        self._queued = 0
        """Commands queued so far; the writer has handled (sent or dropped) ``_handled``."""
        self._handled = 0
        self._flush_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._once_prefix = f"{prefix}:once:"
        self._tasks: list[asyncio.Task[None]] = []
        self._departures: set[asyncio.Task[None]] = set()
        self._peers: set[str] = set()
        self._by_character: dict[int, _Remote] = {}
        self._by_session: dict[int, _Remote] = {}
        self._by_location: Counter[int] = Counter()
        self.dropped = 0
        """Pushes and directory updates not sent (queue full or Redis unreachable)."""
        self.received = 0

    # -- lifecycle ------------------------------------------------------------------------

    def attach(self, hub: Hub) -> None:
        """Deliver to ``hub`` and keep the directory from its presence hooks. Call it before
        the services register theirs: a presence's directory entry then goes out before
        anything a service sends about it."""
        self._hub = hub
        hub.on_join(self._joined)
        hub.on_leave(self._left)

    async def start(self) -> None:
        """Join the cluster: heartbeat, subscribe, load the directory, start the tasks."""
        await self._redis.delete(self._presence_key(self.process_id))
        await self._redis.set(self._alive_key, "1", px=int(self._ttl * 1000))
        start = await self._stream.newest()  # read what comes after now
        await self._refresh_peers()
        pause = min(1.0, self._heartbeat)
        follow = self._stream.follow(start, self._entry, self._recover, pause)
        self._tasks = [
            asyncio.create_task(follow, name="cluster-reader"),
            asyncio.create_task(self._write(), name="cluster-writer"),
            asyncio.create_task(self._beat(), name="cluster-heartbeat"),
        ]
        log.info("joined the cluster as %s (%d other processes)", self.process_id, len(self._peers))

    async def close(self) -> None:
        """Leave the cluster: flush what is queued, drop the heartbeat and the directory share."""
        writer = self._tasks[1] if len(self._tasks) > 1 else None
        if writer is not None and not writer.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout=2.0)
        for task in [*self._tasks, *self._departures]:
            task.cancel()
        for task in [*self._tasks, *self._departures]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        self._departures.clear()
        for link in (self.link, self._writer_link):
            if link is not None:
                link.close()
        with contextlib.suppress(Exception):
            await self._redis.delete(self._alive_key, self._presence_key(self.process_id))
            await self._stream.append(_EVENT, f"P{_SEP}{self.process_id}")

    # -- Broker ---------------------------------------------------------------------------

    sequenced = True

    def forward(self, audience: Audience, text: str, *, here: bool = False) -> int:
        kind = audience.kind
        if kind is AudienceKind.CHARACTER or kind is AudienceKind.SESSION:
            index = self._by_character if kind is AudienceKind.CHARACTER else self._by_session
            remote = index.get(audience.key) if isinstance(audience.key, int) else None
            count = 0 if remote is None else 1
            if not count and not here:
                return 0
        else:
            # written even when no peer is known yet: one may have started since the last beat
            count = len(self._peers)
        self._enqueue(("xadd", _PUSH, audience.encode() + _SEP + text))
        return count

    async def replay(self, after: CursorKey) -> Replayed:
        return await self._stream.replay(after)

    def online_elsewhere(self, character_id: int) -> bool:
        return character_id in self._by_character

    def session_elsewhere(self, character_id: int) -> int | None:
        remote = self._by_character.get(character_id)
        return None if remote is None else remote.session_id

    def location_elsewhere(self, character_id: int) -> int | None:
        remote = self._by_character.get(character_id)
        return None if remote is None else remote.location_id

    @property
    def players_elsewhere(self) -> int:
        return len(self._by_session)

    def players_elsewhere_at(self) -> Mapping[int, int]:
        return self._by_location

    def moved(self, presence: Presence) -> None:
        self._publish_presence("M", presence)

    @contextlib.asynccontextmanager
    async def lock(self, name: str) -> AsyncIterator[None]:
        key, token = self._lock_prefix + name, secrets.token_hex(12)
        pause = 0.002
        try:
            async with asyncio.timeout(_LOCK_WAIT):
                while not await self._redis.set(key, token, nx=True, px=self._lock_ttl_ms):
                    await asyncio.sleep(pause)  # held elsewhere: Redis has no waiting SET
                    pause = min(0.05, pause * 2)
        except TimeoutError:
            raise LobbyError(
                f"the cluster is busy ({name}); try again", code=ErrorCode.UNAVAILABLE
            ) from None
        except RedisError as exc:
            log.warning("cluster lock %s unavailable: %s", name, exc)
            raise LobbyError(
                "the cluster's shared state is unreachable; try again",
                code=ErrorCode.UNAVAILABLE,
            ) from None
        try:
            yield
        finally:
            try:
                await self._release(keys=[key], args=[token])
            except RedisError as exc:  # it expires by itself
                log.warning("cluster lock %s not released: %s", name, exc)

    def notify(self, topic: str, data: str = "") -> None:
        self._enqueue(("xadd", _NOTIFY, _SEP.join((self.process_id, topic, data))))

    def on_notify(self, topic: str, callback: Callable[[str], None]) -> None:
        self._watchers.setdefault(topic, []).append(callback)

    async def flushed(self) -> None:
        target = self._queued
        if self._handled >= target:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._flush_waiters.append((target, waiter))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(waiter), _FLUSH_WAIT)

    def remember(self, key: str, ttl: float) -> None:
        # queued behind the pushes before it and written in the same ordered stream:
        # Redis has run those once it has this
        self._enqueue(("set", self._once_prefix + key, str(max(1, int(ttl * 1000)))))

    async def recalls(self, key: str) -> bool:
        try:
            if self.link is None:
                return bool(await self._redis.exists(self._once_prefix + key))
            # over the broker's own connection: no pool checkout on every chat's path
            (found,) = await self.link.execute([resp_command("EXISTS", self._once_prefix + key)])
            if isinstance(found, RespError):
                raise found
            return bool(found)
        except (RedisError, RespError, OSError, TimeoutError) as exc:  # no memory without Redis
            log.warning("cluster memory of %s unavailable: %s", key, exc)
            return False

    # -- directory ------------------------------------------------------------------------

    @property
    def peers(self) -> frozenset[str]:
        """The other live processes (as of the last heartbeat)."""
        return frozenset(self._peers)

    def remote_characters(self) -> dict[int, str]:
        """Character id -> process, for the characters other processes hold."""
        return {cid: r.process for cid, r in self._by_character.items()}

    async def _joined(self, p: Presence) -> None:
        self._publish_presence("J", p)

    def _publish_presence(self, kind: str, p: Presence) -> None:
        """Write ``p``'s directory entry and announce it (``J`` joined, ``M`` moved)."""
        c = p.character
        if c is None:
            return
        value = json.dumps([p.account_id, c.id, c.name, c.location_id])
        self._enqueue(("hset", self._presence_key(self.process_id), str(p.session_id), value))
        event = _SEP.join((kind, self.process_id, str(p.session_id), value))
        self._enqueue(("xadd", _EVENT, event))

    async def _left(self, p: Presence) -> None:
        if p.character is None:
            return
        self._enqueue(("hdel", self._presence_key(self.process_id), str(p.session_id)))
        event = _SEP.join(("L", self.process_id, str(p.session_id)))
        self._enqueue(("xadd", _EVENT, event))

    def _add(self, process: str, session_id: int, value: str) -> None:
        if process == self.process_id:
            return
        _account, character_id, name, location_id = json.loads(value)
        self._drop_session(session_id)
        remote = _Remote(process, session_id, int(character_id), str(name), int(location_id))
        self._by_session[session_id] = remote
        self._by_character[remote.character_id] = remote
        self._by_location[remote.location_id] += 1

    def _drop_session(self, session_id: int) -> None:
        old = self._by_session.pop(session_id, None)
        if old is None:
            return
        if self._by_character.get(old.character_id) == old:
            del self._by_character[old.character_id]
        self._by_location[old.location_id] -= 1
        if self._by_location[old.location_id] <= 0:
            del self._by_location[old.location_id]

    def _drop_process(self, process: str) -> list[_Remote]:
        """Forget ``process``'s players; return them."""
        gone = [r for r in self._by_session.values() if r.process == process]
        for remote in gone:
            self._drop_session(remote.session_id)
        return gone

    async def _announce_gone(self, process: str, gone: list[_Remote]) -> None:
        """Tell the players at each of ``gone``'s locations that it left (``process``
        died or left: nobody else will), once for the whole cluster: the first process
        to claim ``{prefix}:gone:{process}`` pushes the notices through the stream
        (cursor-stamped, replayed to a resume); the others, seeing the claim taken,
        send nothing. When Redis cannot be asked, this process's own players are told
        at once, without a cursor (as every push is while the stream is unreachable)."""
        hub = self._hub
        if not gone or hub is None or not hub.announce_presence:
            return
        try:
            won = await self._redis.set(
                self._gone_prefix + process, self.process_id, nx=True, ex=_GONE_CLAIM_TTL
            )
        except RedisError as exc:
            log.warning("departures of %s told here only: %s", process, exc)
            for remote in gone:
                audience, left = self._departure(remote)
                hub.deliver(audience, serialize(left))
            return
        if won:
            # first every process forgets them (the stream is read in order): whoever
            # gets a notice is on a process that already knows the player is gone
            self._enqueue(("xadd", _EVENT, f"P{_SEP}{process}"))
            for remote in gone:
                audience, left = self._departure(remote)
                hub.broadcast(left, where=audience)

    def _departure(self, remote: _Remote) -> tuple[Audience, PlayerLeftAreaMessage]:
        """The players at ``remote``'s location, and their notice that it left."""
        left = PlayerLeftAreaMessage(
            character_id=remote.character_id,
            character_name=remote.name,
            location_id=remote.location_id,
            timestamp=self._clock(),
        )
        return Audience.location(remote.location_id, exclude_character=remote.character_id), left

    async def _load(self, process: str) -> None:
        """Read ``process``'s directory share (when it appears, and every resync): its
        entries replace what we had of it, without a moment where they are missing."""
        entries = await self._redis.hgetall(self._presence_key(process))
        seen: set[int] = set()
        for sid, value in entries.items():
            with contextlib.suppress(ValueError):
                self._add(process, int(sid), str(value))
                seen.add(int(sid))
        stale = [
            r.session_id
            for r in self._by_session.values()
            if r.process == process and r.session_id not in seen
        ]
        for session_id in stale:
            self._drop_session(session_id)

    async def _refresh_peers(self) -> None:
        """Find the live processes; load newcomers' presences, drop the dead ones'."""
        live: set[str] = set()
        async for key in self._redis.scan_iter(match=self._alive_pattern, count=1000):
            process = key[len(self._alive_prefix) :]
            if process != self.process_id:
                live.add(process)
        for process in live - self._peers:
            await self._load(process)
        for process in self._peers - live:
            gone = self._drop_process(process)
            await self._redis.delete(self._presence_key(process))
            log.warning("process %s stopped its heartbeat; %d players dropped", process, len(gone))
            await self._announce_gone(process, gone)
        self._peers = live

    def _presence_key(self, process: str) -> str:
        return self._presence_prefix + process

    # -- tasks ----------------------------------------------------------------------------

    def _enqueue(self, command: tuple[str, ...]) -> None:
        try:
            self._queue.put_nowait(command)
            self._queued += 1
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning("cluster queue full; %d pushes dropped so far", self.dropped)

    async def _write(self) -> None:
        queue = self._queue
        while True:
            batch = [await queue.get()]
            while len(batch) < _WRITE_BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                if self._writer_link is not None:
                    results = await self._writer_link.execute([self._pack(c) for c in batch])
                    for result in results:
                        if isinstance(result, RespError):
                            raise result
                else:
                    pipe = self._redis.pipeline(transaction=False)
                    for command in batch:
                        self._apply(pipe, command)
                    results = await pipe.execute()
                for command, result in zip(reversed(batch), reversed(results), strict=True):
                    if command[0] == "xadd":
                        self._stream.written(result)
                        break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.dropped += len(batch)
                log.warning("cluster write failed (%s); %d commands dropped", exc, len(batch))
                self._deliver_here(batch)
                await asyncio.sleep(min(1.0, self._heartbeat))
            finally:
                for _ in batch:
                    queue.task_done()
                self._handled += len(batch)
                self._wake_flushers()

    def _wake_flushers(self) -> None:
        handled = self._handled
        waiting = []
        for target, waiter in self._flush_waiters:
            if target <= handled:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                waiting.append((target, waiter))
        self._flush_waiters = waiting

    def _apply(self, pipe: Any, command: tuple[str, ...]) -> None:
        op = command[0]
        if op == "xadd":
            self._stream.add(pipe, command[1], command[2])
        elif op == "hset":
            pipe.hset(command[1], command[2], command[3])
        elif op == "hdel":
            pipe.hdel(command[1], command[2])
        elif op == "set":
            pipe.set(command[1], "1", px=int(command[2]))
        else:
            raise LobbyError(f"unknown cluster command {op!r}")

    def _pack(self, command: tuple[str, ...]) -> bytes:
        """:meth:`_apply` for the command link: the command as RESP."""
        op = command[0]
        if op == "xadd":
            return self._stream.add_command(command[1], command[2])
        if op == "hset":
            return resp_command("HSET", command[1], command[2], command[3])
        if op == "hdel":
            return resp_command("HDEL", command[1], command[2])
        if op == "set":
            return resp_command("SET", command[1], "1", "PX", command[2])
        raise LobbyError(f"unknown cluster command {op!r}")

    def _deliver_here(self, batch: list[tuple[str, ...]]) -> None:
        """The stream is unreachable: this process's presences get the batch's pushes
        at once (without a cursor), as if there were no other process."""
        hub = self._hub
        if hub is None:
            return
        for command in batch:
            if command[0] == "xadd" and command[1] == _PUSH:
                audience_text, text = command[2].split(_SEP, 1)
                with contextlib.suppress(Exception):
                    hub.deliver(Audience.decode(audience_text), text)

    async def _recover(self) -> None:
        """After a lost stream (Redis restarted?): write our share of the directory
        again (Redis may have lost it) and re-read the others'."""
        with contextlib.suppress(Exception):
            await self._republish()
            self._peers = set()
            self._by_character.clear()
            self._by_session.clear()
            self._by_location.clear()
            await self._refresh_peers()
            log.info("cluster stream restored")

    async def _republish(self) -> None:
        hub = self._hub
        key = self._presence_key(self.process_id)
        share: dict[Any, Any] = {}
        for p in hub.presences() if hub is not None else ():
            c = p.character
            if c is not None:
                share[str(p.session_id)] = json.dumps([p.account_id, c.id, c.name, c.location_id])
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(key)
        if share:
            pipe.hset(key, mapping=share)
        pipe.set(self._alive_key, "1", px=int(self._ttl * 1000))
        await pipe.execute()

    def _entry(self, entry_id: str, kind: str, data: str) -> None:
        if kind == _PUSH:
            hub = self._hub
            if hub is not None:
                self.received += 1
                audience_text, text = data.split(_SEP, 1)
                hub.deliver_push(Audience.decode(audience_text), stream_push(entry_id, text))
        elif kind == _EVENT:
            self._presence_event(data.split(_SEP))
        elif kind == _NOTIFY:
            process, topic, detail = data.split(_SEP, 2)
            if process != self.process_id:
                for callback in self._watchers.get(topic, ()):
                    callback(detail)
        elif kind == _HANDOVER:
            target, session, cursor, text = data.split(_SEP, 3)
            if target == self.process_id and self._hub is not None:
                push = stream_push(cursor, text) if cursor else Push(text)
                self._hub.handed_over(int(session), push)
        else:
            raise LobbyError(f"unknown cluster stream entry kind {kind!r}")

    def _presence_event(self, fields: list[str]) -> None:
        kind, process = fields[0], fields[1]
        if process == self.process_id:
            return
        if kind == "J":
            self._peers.add(process)
            session_id = int(fields[2])
            self._add(process, session_id, fields[3])
            self._hand_over(session_id, process)
        elif kind == "M":
            self._add(process, int(fields[2]), fields[3])
        elif kind == "L":
            remote = self._by_session.get(int(fields[2]))
            if remote is not None and remote.process == process:
                self._drop_session(remote.session_id)
        elif kind == "P":  # a process left (or was found dead by the one announcing it)
            self._peers.discard(process)
            gone = self._drop_process(process)
            if gone:  # the claim is a Redis round trip: not on the reader's path
                task = asyncio.create_task(self._announce_gone(process, gone))
                self._departures.add(task)
                task.add_done_callback(self._departures.discard)
        else:
            raise LobbyError(f"unknown cluster presence event {kind!r}")

    def _hand_over(self, session_id: int, process: str) -> None:
        """``process`` now holds ``session_id``: pass it what we queued for it meanwhile."""
        if self._hub is None:
            return
        backlog = self._hub.hand_over(session_id)
        if backlog:
            for push in backlog:
                data = _SEP.join((process, str(session_id), push.cursor or "", push.text))
                self._enqueue(("xadd", _HANDOVER, data))
            log.info(
                "session %d resumed on %s: %d queued pushes sent there",
                session_id,
                process,
                len(backlog),
            )

    async def _beat(self) -> None:
        """Renew our liveness; every ``_RESYNC_BEATS`` beats, or after a failure (Redis may
        have restarted empty), write our directory share again and re-read the others'."""
        beats = 0
        healthy = True
        while True:
            await asyncio.sleep(self._heartbeat)
            beats += 1
            try:
                if not healthy or beats % _RESYNC_BEATS == 0:
                    await self._republish()
                    for process in self._peers:
                        await self._load(process)
                else:
                    await self._redis.set(self._alive_key, "1", px=int(self._ttl * 1000))
                await self._refresh_peers()
                healthy = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if healthy:
                    log.warning("cluster heartbeat failed: %s", exc)
                healthy = False
