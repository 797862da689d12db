"""Versioned schema migrations, applied in order at lobby start.

:data:`MIGRATIONS` is the ordered list; the database records each applied
version in ``schema_version``. Adding a migration is one append, made by the
module that owns the new tables (at import, before the lobby starts)::

    MIGRATIONS.append(Migration(2, "inventory and parties", create_tables(inventory, parties)))

``upgrade`` receives a synchronous SQLAlchemy ``Connection`` inside the
migration's transaction (run through ``AsyncConnection.run_sync``), so it may use
``metadata.create_all``, ``op``-style DDL via ``conn.execute(text(...))`` or
plain inserts. Each migration commits on its own together with its
``schema_version`` row: a crash between two migrations leaves a consistent,
resumable database (on SQLite the runner opens the transaction itself, ``BEGIN
IMMEDIATE``, so DDL is inside it too and lobbies starting together on one file
take turns; the driver would otherwise commit each ``CREATE``). A migration
that rebuilds tables sets ``foreign_keys_off``: on SQLite it then runs with
foreign key enforcement off (dropping a parent table would otherwise cascade into
its children) and must leave ``PRAGMA foreign_key_check`` clean. A database newer
than this code is refused.

Migration 3 makes every id a client or a resumable state can name (accounts,
characters, sessions, items) one that is never handed out twice: SQLite reuses
the largest deleted rowid of a plain ``INTEGER PRIMARY KEY``, so those tables are
rebuilt with ``AUTOINCREMENT`` (rows and ids kept). PostgreSQL's ``SERIAL``
sequences never hand a value out twice, so there it changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, MetaData, Table, insert, inspect, select
from sqlalchemy.schema import CreateTable, DropTable

from lobby.storage import schema
from protocol.errors import StorageError

__all__ = [
    "MIGRATIONS",
    "NEVER_REUSED_IDS",
    "Migration",
    "create_tables",
    "pending",
    "run_migrations",
]

log = logging.getLogger("lobby.storage")


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: ``version`` (1, 2, ...), a description and the upgrade function.

    ``foreign_keys_off``: run with SQLite's foreign key enforcement off (a table
    rebuild); the runner checks the keys before committing.
    """

    version: int
    description: str
    upgrade: Callable[[Connection], None]
    foreign_keys_off: bool = False


def create_tables(*tables: Table) -> Callable[[Connection], None]:
    """An upgrade function creating ``tables`` (and their indexes)."""

    def upgrade(conn: Connection) -> None:
        for table in tables:
            table.create(conn)

    return upgrade


def _v1_core(conn: Connection) -> None:
    md = MetaData()
    schema.core_tables_v1(md)
    md.create_all(conn, tables=[t for t in md.sorted_tables if t.name != "schema_version"])


NEVER_REUSED_IDS = ("accounts", "characters", "sessions", "items")
"""Tables whose ids are never handed out twice (``AUTOINCREMENT`` on SQLite).

A session id keys a presence, a character id a party membership or invite, an
item id an offer in a trade: a reused one would hand that state to a stranger.
"""


def _v3_ids_never_reused(conn: Connection) -> None:
    if conn.dialect.name != "sqlite":
        return  # PostgreSQL sequences never hand a value out twice
    import lobby.storage.game_schema  # noqa: F401, PLC0415 - puts ``items`` on the metadata

    for name in NEVER_REUSED_IDS:
        _rebuild_with_autoincrement(conn, schema.metadata.tables[name])


def _rebuild_with_autoincrement(conn: Connection, table: Table) -> None:
    """Rebuild ``table`` as ``INTEGER PRIMARY KEY AUTOINCREMENT``, keeping rows and ids.

    SQLite's procedure for a schema change it cannot ``ALTER``: create the new
    table under a temporary name, copy, drop the old one, rename, recreate the
    indexes. Foreign keys must be off (the runner sees to it): dropping a parent
    would cascade into its children, and their ``REFERENCES`` name the table,
    which the rename restores.
    """
    found = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table.name,)
    ).first()
    if found is None or "AUTOINCREMENT" in str(found[0]).upper():
        return  # not created yet (its migration makes it so), or already done
    md = MetaData()
    for other in schema.metadata.sorted_tables:  # so its foreign keys resolve
        if other.name != table.name:
            other.to_metadata(md)
    temporary = f"_rebuild_{table.name}"
    new = table.to_metadata(md, name=temporary)
    new.dialect_kwargs["sqlite_autoincrement"] = True
    quote = conn.dialect.identifier_preparer.quote
    conn.execute(CreateTable(new))
    conn.execute(insert(new).from_select([c.name for c in table.columns], select(table)))
    conn.execute(DropTable(table))  # its indexes go with it
    conn.exec_driver_sql(f"ALTER TABLE {quote(temporary)} RENAME TO {quote(table.name)}")
    for index in table.indexes:
        index.create(conn)


MIGRATIONS: list[Migration] = [
    Migration(1, "accounts, characters, sessions", _v1_core),
    Migration(
        3,
        "ids of accounts, characters, sessions and items are never reused",
        _v3_ids_never_reused,
        foreign_keys_off=True,
    ),
]


def pending(conn: Connection) -> list[Migration]:
    """The migrations not yet applied on ``conn``'s database, in order."""
    _check_list()
    applied = _applied(conn)
    newest = max((m.version for m in MIGRATIONS), default=0)
    if applied and max(applied) > newest:
        raise StorageError(
            f"database schema version {max(applied)} is newer than this lobby ({newest})"
        )
    return [m for m in sorted(MIGRATIONS, key=lambda m: m.version) if m.version not in applied]


def run_migrations(conn: Connection, now: float) -> list[int]:
    """Apply every pending migration on ``conn``; return the versions applied.

    Each migration commits with its ``schema_version`` row; on failure the
    migration's transaction is rolled back and a StorageError names it.
    """
    sqlite = conn.dialect.name == "sqlite"
    if sqlite:  # lobbies starting together on one file: one at a time from here
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    schema.schema_version.create(conn, checkfirst=True)
    conn.commit()
    done: list[int] = []
    for migration in pending(conn):
        keys_off = sqlite and migration.foreign_keys_off
        try:
            if keys_off:  # outside any transaction: SQLite ignores it inside one
                conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            if sqlite:
                # the write lock now: a lobby starting beside us may have applied it meanwhile
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                if migration.version in _applied(conn):
                    conn.commit()
                    continue
            migration.upgrade(conn)
            if keys_off:
                _check_foreign_keys(conn)
            conn.execute(
                insert(schema.schema_version).values(
                    version=migration.version,
                    description=migration.description,
                    applied_at=now,
                )
            )
            conn.commit()
        except Exception as exc:
            conn.rollback()
            raise StorageError(
                f"migration {migration.version} ({migration.description}) failed: {exc}"
            ) from exc
        finally:
            if keys_off:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()
        log.info("applied migration %d: %s", migration.version, migration.description)
        done.append(migration.version)
    conn.commit()
    return done


def _applied(conn: Connection) -> set[int]:
    if not inspect(conn).has_table("schema_version"):
        return set()
    return {int(v) for v in conn.execute(select(schema.schema_version.c.version)).scalars()}


def _check_foreign_keys(conn: Connection) -> None:
    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        raise StorageError(f"foreign keys broken by the migration: {broken[:5]}")


def _check_list() -> None:
    versions = [m.version for m in MIGRATIONS]
    if len(set(versions)) != len(versions) or any(v < 1 for v in versions):
        raise StorageError(f"migration versions must be unique and >= 1: {versions}")
