"""The cluster's one Redis stream: what every lobby process writes and reads, in one order.

:class:`lobby.cluster.RedisBroker` writes every push, directory event, state
notification and hand-over as an entry ``{k: kind, d: data}`` of the stream
``{prefix}:stream`` (:class:`EntryKind`; the data's fields are separated by
:data:`SEP`) and reads them all back, in the stream's order, with one blocking
``XREAD`` loop (:meth:`ClusterStream.follow`). Each entry id (``"<ms>-<seq>"``,
Redis' clock) is the resume cursor of the push it carries (:mod:`protocol.resume`).

Entries older than the reconnect grace plus :data:`STREAM_MARGIN` are trimmed as
new ones are added (``MINID ~``, computed from the newest id written, so on
Redis' clock, not ours). :meth:`ClusterStream.replay` reads what followed a
cursor for a resuming session, at most :data:`REPLAY_MAX` entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from lobby.broker import Audience, Push, Replayed
from lobby.cluster_wire import StreamReader, command, lean_target
from protocol.resume import CursorKey

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["REPLAY_MAX", "SEP", "STREAM_MARGIN", "ClusterStream", "EntryKind", "stream_push"]

log = logging.getLogger("lobby.cluster")

SEP = "\x1f"
"""Separates the fields of an entry's data."""
STREAM_MARGIN = 30.0
"""Seconds the stream keeps entries beyond the reconnect grace (a client resumes at the
end of its grace with a cursor from a little before it dropped)."""
REPLAY_MAX = 10_000
"""Stream entries one resume reads at most (past them: ``replay: gap``)."""
_READ_BATCH = 1024
"""Stream entries one ``XREAD`` returns at most."""
_READ_BLOCK_MS = 1000


class EntryKind(StrEnum):
    """What a stream entry carries (its ``k`` field)."""

    PUSH = "p"
    """``audience SEP text``: a push, delivered by every process to its own audience."""
    EVENT = "e"
    """A presence directory event (join, move, leave, a process leaving)."""
    NOTIFY = "n"
    """``process SEP topic SEP data``: shared state changed (:meth:`Broker.notify`)."""
    HANDOVER = "h"
    """``process SEP session SEP cursor SEP text``: a push queued for a session that
    resumed on ``process``."""


def stream_push(entry_id: str, text: str) -> Push:
    """The push of stream entry ``entry_id`` (``"<ms>-<seq>"``): its id is its cursor."""
    ms, _, seq = entry_id.partition("-")
    return Push(text, entry_id, (int(ms), int(seq)))


class ClusterStream:
    """Writing to, following and replaying the stream ``key`` of ``client``."""

    def __init__(self, client: aioredis.Redis, key: str, keep: float) -> None:
        self._redis = client
        self.key = key
        self._keep_ms = int(keep * 1000)
        self._minid: str | None = None
        """Entries before this id may be trimmed (from the newest id written)."""

    async def newest(self) -> str:
        """The id of the newest entry (``"0-0"`` when the stream is empty)."""
        newest = await self._redis.xrevrange(self.key, count=1)
        return str(newest[0][0]) if newest else "0-0"

    def add(self, pipe: Any, kind: str, data: str) -> None:
        """Queue an ``XADD`` of the entry on ``pipe`` (trimming what is past the window)."""
        pipe.xadd(self.key, {"k": kind, "d": data}, minid=self._minid, approximate=True)

    def add_command(self, kind: str, data: str) -> bytes:
        """:meth:`add` as a packed command (for :class:`lobby.cluster_wire.CommandLink`)."""
        if self._minid is None:
            return command("XADD", self.key, "*", "k", kind, "d", data)
        return command("XADD", self.key, "MINID", "~", self._minid, "*", "k", kind, "d", data)

    def written(self, entry_id: Any) -> None:
        """``entry_id`` is the newest entry written: later writes trim by it."""
        if isinstance(entry_id, bytes):
            entry_id = entry_id.decode()
        newest = int(str(entry_id).partition("-")[0])
        self._minid = f"{max(0, newest - self._keep_ms)}-0"

    async def append(self, kind: str, data: str) -> None:
        """Write one entry now (outside the ordered writer: for a last word on leaving)."""
        await self._redis.xadd(self.key, {"k": kind, "d": data})

    async def follow(
        self,
        last: str,
        handle: Callable[[str, str, str], None],
        recover: Callable[[], Awaitable[None]],
        pause: float,
    ) -> None:
        """For ever: ``handle(entry id, kind, data)`` each entry after ``last``, in order.
        When the stream cannot be read, wait ``pause``, ``await recover()`` and read on
        from the last entry handled.

        The reads go over a connection of their own (:mod:`lobby.cluster_wire`, which
        handles each reply in the transport's callback) unless the client's URL needs
        what only the redis client speaks (TLS, a credential provider)."""
        target = lean_target(self._redis.connection_pool)
        if target is None:
            await self._follow_with_client(last, handle, recover, pause)
            return
        while True:
            reader = StreamReader(
                self.key, last, handle, count=_READ_BATCH, block_ms=_READ_BLOCK_MS
            )
            try:
                await reader.run(target)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                last = reader.last
                await _read_again(exc, pause, recover)

    async def _follow_with_client(
        self,
        last: str,
        handle: Callable[[str, str, str], None],
        recover: Callable[[], Awaitable[None]],
        pause: float,
    ) -> None:
        """:meth:`follow` through the redis client (for what the lean reader cannot reach)."""
        import redis.asyncio as aioredis

        # one connection kept for the blocking reads: no pool checkout on every push's path
        reader = aioredis.Redis(
            connection_pool=self._redis.connection_pool, single_connection_client=True
        )
        streams: dict[Any, Any] = {self.key: last}
        try:
            while True:
                try:
                    reply: Any = await reader.xread(
                        streams, count=_READ_BATCH, block=_READ_BLOCK_MS
                    )
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    await _read_again(exc, pause, recover)
                    continue
                for _name, entries in reply or ():
                    for entry_id, fields in entries:
                        streams[self.key] = entry_id
                        try:
                            handle(str(entry_id), *_fields(fields))
                        except Exception:
                            log.exception("a cluster stream entry could not be handled")
        finally:
            with contextlib.suppress(Exception):
                await reader.aclose()

    async def replay(self, after: CursorKey) -> Replayed:
        """The pushes after cursor ``after`` still in the stream (at most
        :data:`REPLAY_MAX`); complete only if the cursor's own entry is still there
        (nothing after it was trimmed) and none was left out."""
        start = f"{after[0]}-{after[1]}"
        try:
            rows: list[Any] = list(
                await self._redis.xrange(self.key, min=start, count=REPLAY_MAX + 2) or ()
            )
        except Exception as exc:
            log.warning("cluster stream unreadable for a resume (%s)", exc)
            return Replayed([], complete=False)
        complete = bool(rows) and rows[0][0] == start
        if complete:
            rows = rows[1:]
        if len(rows) > REPLAY_MAX:
            complete = False
            rows = rows[:REPLAY_MAX]
        pushes: list[tuple[Audience, Push]] = []
        for entry_id, fields in rows:
            kind, data = _fields(fields)
            if kind == EntryKind.PUSH:
                audience_text, text = data.split(SEP, 1)
                pushes.append((Audience.decode(audience_text), stream_push(str(entry_id), text)))
        return Replayed(pushes, complete)


def _fields(fields: Mapping[Any, Any]) -> tuple[str, str]:
    return str(fields.get("k", "")), str(fields.get("d", ""))


async def _read_again(
    exc: BaseException, pause: float, recover: Callable[[], Awaitable[None]]
) -> None:
    """After a failed read of the stream: say so, wait ``pause`` (a back-off, so a Redis
    that is down is not hammered) and ``await recover()`` before the next read."""
    log.warning("cluster stream unreadable (%s); reading again", exc)
    await asyncio.sleep(pause)
    await recover()
