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
* A cluster lock expires by itself (so that a dead holder cannot block everyone), which
  lets a holder that *paused* past the expiry (a long GC or swap stall, a stopped VM)
  wake up believing it still holds the lock. A fencing token makes its writes harmless:
  taking the lock also bumps ``shared_fences.token`` for ``name`` in the database and
  remembers the new value, and every write made under the lock (:meth:`SharedState.write`)
  first re-checks, in its own transaction, that the stored token is still that value
  (an ``UPDATE ... WHERE token = :mine`` that must match one row). A newer holder has
  bumped it, so the stale write is refused (``ERROR unavailable``) and rolls back; on
  PostgreSQL the check's row lock also makes a newer holder's bump wait for a write
  already past its check. Tokens live in the database, so a restarted Redis cannot
  hand out old ones again.

Alone, :meth:`change` is just the local lock: nothing is re-read, nothing is fenced,
nothing costs more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from sqlalchemy import insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from lobby.broker import Broker, LocalBroker
from lobby.storage.game_schema import shared_fences
from protocol.errors import ErrorCode, LobbyError

if TYPE_CHECKING:
    from lobby.storage import Database

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
        self._db: Database | None = None
        self._token: int | None = None
        """The fencing token taken with the cluster lock (None outside :meth:`change`)."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def attach(self, broker: Broker, db: Database) -> None:
        """Change through ``broker`` and re-read when another process changed the state;
        ``db`` holds the fencing tokens and is what :meth:`write` opens."""
        self._broker = broker
        self._db = db
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
                self._token = await self._take_token()
                try:
                    await self._reload()
                    yield
                finally:
                    self._token = None
                    self._broker.notify(self.name)

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction of the database, fenced inside :meth:`change` (see
        :meth:`fence`): use it for every write of the state made under the lock."""
        if self._db is None:
            raise LobbyError(f"{self.name} is not attached to a database")
        async with self._db.write() as db:
            await self.fence(db)
            yield db

    async def fence(self, db: AsyncConnection) -> None:
        """Refuse (``ERROR unavailable``) if another process took the lock since ours was
        taken; call it first in each write transaction made under :meth:`change`.

        Outside :meth:`change`, or alone, there is nothing to check.
        """
        token = self._token
        if token is None:
            return
        result = await db.execute(
            update(shared_fences)
            .where(shared_fences.c.name == self.name, shared_fences.c.token == token)
            .values(token=token)
        )
        if result.rowcount != 1:
            log.warning(
                "%s: our cluster lock (token %d) was taken over by another process; "
                "the write is refused",
                self.name,
                token,
            )
            raise LobbyError(
                f"the lobby lost its hold on the {self.name} state; try again",
                code=ErrorCode.UNAVAILABLE,
            )

    async def _take_token(self) -> int:
        """Bump and return the fencing token of ``name`` (the first holder creates it)."""
        if self._db is None:
            raise LobbyError(f"{self.name} is not attached to a database")
        async with self._db.write() as db:
            row = (
                await db.execute(
                    update(shared_fences)
                    .where(shared_fences.c.name == self.name)
                    .values(token=shared_fences.c.token + 1)
                    .returning(shared_fences.c.token)
                )
            ).first()
            if row is not None:
                return int(row[0])
            try:
                await db.execute(insert(shared_fences).values(name=self.name, token=1))
            except IntegrityError:  # another process created it at the same moment
                raise LobbyError(
                    f"the cluster is busy ({self.name}); try again", code=ErrorCode.UNAVAILABLE
                ) from None
            return 1

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
