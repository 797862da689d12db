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
resumable database. A database newer than this code is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, MetaData, Table, insert, inspect, select

from lobby.storage import schema
from protocol.errors import StorageError

__all__ = ["MIGRATIONS", "Migration", "create_tables", "pending", "run_migrations"]

log = logging.getLogger("lobby.storage")


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: ``version`` (1, 2, ...), a description and the upgrade function."""

    version: int
    description: str
    upgrade: Callable[[Connection], None]


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


MIGRATIONS: list[Migration] = [
    Migration(1, "accounts, characters, sessions", _v1_core),
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
    schema.schema_version.create(conn, checkfirst=True)
    conn.commit()
    done: list[int] = []
    for migration in pending(conn):
        try:
            migration.upgrade(conn)
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
        log.info("applied migration %d: %s", migration.version, migration.description)
        done.append(migration.version)
    conn.commit()
    return done


def _applied(conn: Connection) -> set[int]:
    if not inspect(conn).has_table("schema_version"):
        return set()
    return {int(v) for v in conn.execute(select(schema.schema_version.c.version)).scalars()}


def _check_list() -> None:
    versions = [m.version for m in MIGRATIONS]
    if len(set(versions)) != len(versions) or any(v < 1 for v in versions):
        raise StorageError(f"migration versions must be unique and >= 1: {versions}")
