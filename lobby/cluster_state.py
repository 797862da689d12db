"""State a service keeps in memory *and* in the database, changed safely by several processes.

Parties and the world (shard owners, reality, the Aetherfall schedule) are held in memory
for speed and written to the database on every change. With one lobby process the memory
is the truth. With several (``redis_url``), each process has its own copy, so a change
must be made on the current state and seen by the others:

* :meth:`SharedState.change` serializes changes: the process-local lock, then (in a
  cluster) the cluster-wide lock ``name`` (:meth:`lobby.broker.Broker.lock`); under it the
  state is re-read from the database (another process may have changed it), so the change
  applies to the latest state and is written before anyone else may change it.
* After the change the other processes are notified (:meth:`lobby.broker.Broker.notify`)
  and re-read the state in the background, so their reads (REST, pushes on join) catch up.

Alone, :meth:`change` is just the local lock: nothing is re-read, nothing costs more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from lobby.broker import Broker, LocalBroker

__all__ = ["SharedState"]

log = logging.getLogger("lobby.cluster")


class SharedState:
    """Serializes changes to one piece of shared state (see the module docstring)."""

    def __init__(self, name: str, reload: Callable[[], Awaitable[None]]) -> None:
        self.name = name
        self.lock = asyncio.Lock()
        """The process-local lock (what :meth:`change` takes first)."""
        self._reload = reload
        self._broker: Broker = LocalBroker()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def attach(self, broker: Broker) -> None:
        """Change through ``broker`` and re-read when another process changed the state."""
        self._broker = broker
        broker.on_notify(self.name, self._reload_soon)

    @property
    def distributed(self) -> bool:
        return self._broker.distributed

    @contextlib.asynccontextmanager
    async def change(self) -> AsyncIterator[None]:
        """Hold the state for one change (re-read first when other processes share it)."""
        async with self.lock:
            if not self._broker.distributed:
                yield
                return
            async with self._broker.lock(self.name):
                await self._reload()
                try:
                    yield
                finally:
                    self._broker.notify(self.name)

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _reload_soon(self, data: str = "") -> None:
        del data
        if self._closed:
            return
        task = asyncio.get_running_loop().create_task(
            self._reload_now(), name=f"{self.name}-reload"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reload_now(self) -> None:
        async with self.lock:
            if self._closed:
                return
            try:
                await self._reload()
            except Exception:
                log.exception("re-reading %s after another process changed it failed", self.name)
