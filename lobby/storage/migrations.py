"""Schema migrations on Alembic, applied at lobby start and by ``python -m lobby db upgrade``.

The Alembic environment ships inside the package (``lobby/storage/alembic``:
``env.py`` and ``versions/``); nothing is read from an ``alembic.ini``.
:func:`upgrade` takes a synchronous SQLAlchemy ``Connection`` (from
``AsyncConnection.run_sync``) and runs every pending revision in ONE
transaction, so a failed revision leaves the database as it was:

* SQLite: ``BEGIN IMMEDIATE`` first, so lobbies starting together on one file
  take turns (the others wait on the write lock, then find nothing to do). The
  revisions run with foreign key enforcement off (a revision that rebuilds a
  parent table, as Alembic's batch mode does, would otherwise cascade into its
  children) and ``PRAGMA foreign_key_check`` must be clean before the commit.
* PostgreSQL: a transaction-scoped advisory lock, then transactional DDL.

A database made by the lobby's earlier hand-written runner (a ``schema_version``
table) is converted first, in the same transaction: its missing steps are run
and it is stamped at the revision equal to its newest step (:data:`BASELINE` for
step 3; see :mod:`lobby.storage.legacy`). A
database at a revision this code does not know (made by a newer lobby) is
refused.

Adding a revision: write ``lobby/storage/alembic/versions/vNNNN_<slug>.py``
with ``revision = "NNNN"`` and ``down_revision`` the previous head, using
``alembic.op`` (``python -m lobby db revision -m "..."`` autogenerates one from
the difference between :data:`lobby.storage.metadata` and the newest revision),
and change the table objects of :mod:`lobby.storage.schema` to match: a test
checks that the revisions and the metadata agree.

A service that ships its own tables outside this package appends its versions
directory to :data:`VERSION_LOCATIONS` at import, before the lobby starts; its
first revision has ``down_revision = None``, a ``branch_labels`` of its own and
``depends_on = BASELINE`` (or a later core revision it references).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, MetaData

from lobby.storage import legacy
from protocol.errors import StorageError

__all__ = [
    "BASELINE",
    "SCRIPT_LOCATION",
    "VERSION_LOCATIONS",
    "Upgrade",
    "alembic_config",
    "current",
    "heads",
    "target_metadata",
    "upgrade",
]

log = logging.getLogger("lobby.storage")

# Alembic says at INFO which dialect it found and each plugin it set up, on every start;
# the lobby logs what changed itself. An operator who sets the level explicitly keeps it.
if logging.getLogger("alembic").level == logging.NOTSET:
    logging.getLogger("alembic").setLevel(logging.WARNING)

SCRIPT_LOCATION = Path(__file__).with_name("alembic")
"""The Alembic environment shipped in the package (``env.py``, ``versions/``)."""

BASELINE = "0001"
"""The revision equal to the schema of the old runner's newest step."""

VERSION_LOCATIONS: list[Path] = [SCRIPT_LOCATION / "versions"]
"""Directories of revisions: the lobby's own, then those services append."""

_PG_MIGRATION_LOCK = 0x5AAD5  # advisory lock id: one lobby migrates at a time


@dataclass(frozen=True, slots=True)
class Upgrade:
    """What :func:`upgrade` did: the revisions before and after, old steps it ran."""

    before: tuple[str, ...]
    after: tuple[str, ...]
    legacy_steps: tuple[int, ...] = ()
    converted: bool = False


def target_metadata() -> MetaData:
    """The lobby's table objects, every module that declares tables imported."""
    import lobby.storage.game_schema  # noqa: F401, PLC0415 - puts its tables on the metadata
    from lobby.storage.schema import metadata  # noqa: PLC0415

    return metadata


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic ``Config`` for the packaged environment, bound to ``connection``.

    The environment (``env.py``) runs on ``config.attributes["connection"]``
    inside the transaction the caller holds.
    """
    cfg = Config()
    cfg.set_main_option("script_location", _escape(SCRIPT_LOCATION))
    cfg.set_main_option("path_separator", "newline")
    cfg.set_main_option("version_locations", "\n".join(_escape(p) for p in VERSION_LOCATIONS))
    cfg.set_main_option("file_template", "v%%(rev)s_%%(slug)s")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def heads() -> tuple[str, ...]:
    """The newest revision of each branch this code knows."""
    return tuple(sorted(ScriptDirectory.from_config(alembic_config()).get_heads()))


def current(conn: Connection) -> tuple[str, ...]:
    """The revisions recorded in ``conn``'s database (empty: none, or the old runner's)."""
    return tuple(sorted(MigrationContext.configure(conn).get_current_heads()))


def upgrade(conn: Connection, target: str = "heads") -> Upgrade:
    """Convert an old-runner database, then upgrade ``conn``'s database to ``target``.

    Everything commits together; on failure it is rolled back and a
    StorageError says what failed.
    """
    sqlite = conn.dialect.name == "sqlite"
    if conn.in_transaction():
        conn.commit()
    if sqlite:  # outside any transaction: SQLite ignores it inside one
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
    try:
        if sqlite:  # the write lock now: lobbies starting together take turns from here
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
        result = _upgrade_locked(conn, target, sqlite=sqlite)
        conn.commit()
    except Exception as exc:
        conn.rollback()
        if isinstance(exc, StorageError):
            raise
        raise StorageError(f"database migration failed: {exc}") from exc
    finally:
        if sqlite:
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            conn.commit()
    if result.converted:
        log.info(
            "converted the database of the old migration runner (missing steps run: %s)",
            list(result.legacy_steps) or "none",
        )
    if result.before != result.after:
        log.info(
            "database upgraded from %s to %s",
            ",".join(result.before) or "empty",
            ",".join(result.after),
        )
    return result


def _upgrade_locked(conn: Connection, target: str, *, sqlite: bool) -> Upgrade:
    cfg = alembic_config(conn)
    script = ScriptDirectory.from_config(cfg)
    before = current(conn)
    steps: list[int] = []
    converted = False
    if not before and legacy.is_legacy(conn):
        stamp, steps = legacy.convert(conn)
        command.stamp(cfg, stamp)
        converted = True
    else:
        _check_known(script, before)
    command.upgrade(cfg, target)
    if sqlite:
        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
        if broken:
            raise StorageError(f"foreign keys broken by the migration: {broken[:5]}")
    return Upgrade(before, current(conn), tuple(steps), converted)


def _check_known(script: ScriptDirectory, revisions: tuple[str, ...]) -> None:
    for revision in revisions:
        try:
            script.get_revision(revision)
        except CommandError:
            raise StorageError(
                f"the database is at revision {revision}, which this lobby does not know "
                f"(made by a newer lobby? this one knows up to {','.join(heads())})"
            ) from None


def _escape(path: Path) -> str:
    return str(path).replace("%", "%%")  # Config values go through ConfigParser interpolation
