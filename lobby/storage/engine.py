"""The lobby's database handle: an async SQLAlchemy Core engine on SQLite or PostgreSQL.

``Database.open(url, now=...)`` builds the engine and applies pending migrations
(Alembic revisions, :mod:`lobby.storage.migrations`).
URLs: ``sqlite:///path/to/file`` (the default, aiosqlite, WAL, ``busy_timeout``,
foreign keys on) or ``postgresql://user:pw@host/db`` (asyncpg). The driver part
is filled in when absent.

Two ways in, both async context managers yielding an ``AsyncConnection``:

* :meth:`Database.read` for queries (no transaction held open on SQLite);
* :meth:`Database.write` for one transaction that commits on exit and rolls back
  on an exception. Everything that moves value (gold, items) must happen inside
  one ``write()`` block. On SQLite the lobby serializes its writers with an
  ``asyncio.Lock`` (SQLite allows one writer anyway, and waiting on a lock is
  cheaper and fairer than retrying ``SQLITE_BUSY``); PostgreSQL runs writers
  concurrently at READ COMMITTED, so a service that reads then writes value
  there must lock its rows (``select(...).with_for_update()``).

Bound parameters (password hashes, token hashes) are never logged: the engine
hides them from its SQL log and its error messages (``hide_parameters``), and
the DEBUG records of aiosqlite (each call with its arguments) and of SQLAlchemy's
SQL log (result rows) are dropped.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, make_url
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from lobby.storage.migrations import Upgrade, upgrade
from protocol.errors import ConfigError, StorageError

__all__ = ["Database", "build_engine", "normalize_url"]

log = logging.getLogger("lobby.storage")

_SQLITE_BUSY_TIMEOUT_MS = 10_000


def normalize_url(url: str) -> URL:
    """Parse ``url`` and pick the async driver (aiosqlite / asyncpg)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"invalid database URL: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ConfigError("the lobby needs a SQLite file: sqlite:///path/to/lobby.sqlite3")
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg")
    raise ConfigError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")


def build_engine(url: str) -> AsyncEngine:
    """An engine for ``url`` (see :func:`normalize_url`), configured; no migration.

    A SQLite file's directory is created; the connections are WAL, with a busy
    timeout and foreign keys on.
    """
    parsed = normalize_url(url)
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database is not None  # noqa: S101 - checked in normalize_url
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": _SQLITE_BUSY_TIMEOUT_MS / 1000}
    else:
        kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
    # bound parameters hold password and token hashes: never in a log line or an error
    engine = create_async_engine(parsed, hide_parameters=True, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


class Database:
    """An open database: the engine, its dialect and the read/write entry points."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect: str = engine.dialect.name
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None

    @classmethod
    async def open(cls, url: str, *, now: float) -> Database:
        """Connect to ``url``, configure it and apply pending migrations.

        ``now`` is accepted for callers that pass their clock; Alembic records
        revisions, not times.
        """
        engine = build_engine(url)
        db = cls(engine)
        try:
            await db.migrate()
        except BaseException:
            await engine.dispose()
            raise
        return db

    async def migrate(self, target: str = "heads") -> Upgrade:
        """Apply pending Alembic revisions up to ``target`` (see :mod:`.migrations`)."""
        try:
            async with _alembic_turn(), self.engine.connect() as conn:
                return await conn.run_sync(upgrade, target)
        except StorageError:
            raise
        except (SQLAlchemyError, OSError) as exc:
            raise StorageError(f"cannot open the database: {exc}") from exc

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for queries."""
        async with self.engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One transaction: committed when the block ends, rolled back on an exception."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    async def close(self) -> None:
        """Close every pooled connection (waits for none: callers finish first)."""
        await self.engine.dispose()


_ALEMBIC_TURNS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


@asynccontextmanager
async def _alembic_turn() -> AsyncIterator[None]:
    """One migration at a time in this event loop.

    Alembic keeps its running environment in a module global (``alembic.context``);
    two upgrades interleaving at their awaits (different databases opened together)
    would run one's revisions on the other's connection.
    """
    loop = asyncio.get_running_loop()
    lock = _ALEMBIC_TURNS.get(loop)
    if lock is None:
        lock = _ALEMBIC_TURNS[loop] = asyncio.Lock()
    async with lock:
        yield


class _NoDebugRecords(logging.Filter):
    """Drops DEBUG records of a logger whose DEBUG output carries secrets."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


# aiosqlite's DEBUG records print each call with its bound parameters; SQLAlchemy's
# (its SQL log at DEBUG) print result rows, password hashes among them. Their INFO
# and higher records (SQL text, parameters hidden) stay.
for _name in ("aiosqlite", "sqlalchemy.engine.Engine"):
    _logger = logging.getLogger(_name)
    if not any(isinstance(f, _NoDebugRecords) for f in _logger.filters):
        _logger.addFilter(_NoDebugRecords())


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()
