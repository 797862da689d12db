"""One stream of events fanned out to listeners and to bounded async iterators.

The asyncio side of the mesh has three event streams of the same shape: a
discovery source (``PeerFound`` / ``PeerLost``), a :class:`~mesh.node.PeerNode`
(``PeerConnected`` / ``PeerDisconnected``) and a LAN node (membership).
:class:`EventFanout` is that shape once:

* :meth:`EventFanout.add_listener` calls ``listener(event)`` in the event loop
  for every later event and returns a remover. A listener that raises is
  logged and skipped; one that returns an awaitable (a coroutine function) has
  it run as a task when the owner gave a ``spawn`` function, and is refused
  (logged) otherwise;
* :meth:`EventFanout.events` is an async iterator over a bounded queue (a
  consumer more than ``limit`` events behind loses the oldest), optionally
  starting with a replay of the current state; it ends when the fanout closes.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Generic, TypeVar

__all__ = ["QUEUE_LIMIT", "EventFanout", "notify"]

QUEUE_LIMIT = 1024
"""Events an iterator may fall behind before the oldest are dropped."""

E = TypeVar("E")


def notify(
    listeners: Iterable[Callable[[E], Any]],
    event: E,
    *,
    log: logging.Logger,
    what: str,
    spawn: Callable[[Awaitable[Any]], None] | None,
    label: object = None,
) -> None:
    """Call each listener with ``event``; run what an async one returns with ``spawn``.

    A listener that raises (or whose coroutine raises) is logged as a failed
    ``what`` on ``label`` (default: the event's repr) and does not stop the
    others. Without ``spawn`` an async listener is refused (logged).
    """
    for listener in list(listeners):
        try:
            result = listener(event)
        except Exception:
            log.exception("%s %r failed on %s", what, listener, _shown(event, label))
            continue
        if result is None or not inspect.isawaitable(result):  # None: the usual, sync one
            continue
        if spawn is None:
            if inspect.iscoroutine(result):
                result.close()
            log.error("%s %r must not be async", what, listener)
        else:
            spawn(_guarded(result, log, f"{what} {listener!r} failed on {_shown(event, label)}"))


def _shown(event: object, label: object) -> str:
    return repr(event) if label is None else str(label)


async def _guarded(result: Awaitable[Any], log: logging.Logger, failure: str) -> None:
    try:
        await result
    except Exception:
        log.exception("%s", failure)


class EventFanout(Generic[E]):
    """Listeners and iterators of one event stream (see the module docstring).

    ``log`` and ``what`` (``"discovery listener"``) name the stream in the line
    logged when a listener fails, ``label(event)`` the event (default: its
    repr); ``spawn`` runs the awaitable an async listener returns (the owner
    keeps and cancels the task).
    """

    def __init__(
        self,
        log: logging.Logger,
        what: str,
        *,
        spawn: Callable[[Awaitable[Any]], None] | None = None,
        label: Callable[[E], object] | None = None,
        limit: int = QUEUE_LIMIT,
    ) -> None:
        self._log = log
        self._what = what
        self._spawn = spawn
        self._label = label
        self._limit = limit
        self._listeners: list[Callable[[E], Any]] = []
        self._queues: set[asyncio.Queue[E | None]] = set()
        self._closed = False

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def add_listener(self, listener: Callable[[E], Any]) -> Callable[[], None]:
        """Call ``listener(event)`` for every later event; returns a remover (idempotent)."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def events(self, replay: Iterable[E] = ()) -> AsyncIterator[E]:
        """Iterate over ``replay`` (its last ``limit`` items), then every later event.

        Ends once the fanout is closed (at once after the replay if it already is).
        """
        queue: asyncio.Queue[E | None] = asyncio.Queue(self._limit)
        for item in list(replay)[-self._limit :]:
            queue.put_nowait(item)
        if self._closed:
            self._put(queue, None)
        else:
            self._queues.add(queue)
        return self._iterate(queue)

    def emit(self, event: E) -> None:
        """Hand ``event`` to every listener, then to every iterator (nothing once closed)."""
        if self._closed:
            return
        notify(
            self._listeners,
            event,
            log=self._log,
            what=self._what,
            spawn=self._spawn,
            label=self._label(event) if self._label is not None else None,
        )
        for queue in self._queues:
            self._put(queue, event)

    def close(self) -> None:
        """End every iterator; later events are dropped. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for queue in self._queues:
            self._put(queue, None)

    # internals ------------------------------------------------------------------

    async def _iterate(self, queue: asyncio.Queue[E | None]) -> AsyncIterator[E]:
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self._queues.discard(queue)

    @staticmethod
    def _put(queue: asyncio.Queue[E | None], item: E | None) -> None:
        while True:
            try:
                queue.put_nowait(item)
                return
            except asyncio.QueueFull:
                queue.get_nowait()
