"""The schema of the hand-written migration runner, frozen, and the step from it to Alembic.

Before Alembic the lobby recorded its schema in a ``schema_version`` table: one
row per applied step, 1 (accounts, characters, sessions), 2 (the game tables),
3 (ids of accounts, characters, sessions and items never reused:
``AUTOINCREMENT`` on SQLite) and 4 (the admin API's ``account_bans``).
:func:`baseline_metadata` is the schema after step 3; Alembic's baseline
revision creates exactly it, and revision 0002 adds step 4's table, so a
database made by the old runner is at one of those once its missing steps up to
3 are done.

:func:`convert` brings such a database there, inside the caller's transaction:
it creates the tables of a missing step 1 or 2, rebuilds a table still without
``AUTOINCREMENT`` (step 3, SQLite only; the caller runs it with foreign keys off
and checks them before committing), and drops ``schema_version``. Rows and ids
are kept. A ``schema_version`` naming a step this module does not know (a newer
runner) is refused.

Never edit :func:`baseline_metadata`: a schema change is a new Alembic revision.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    inspect,
    select,
)
from sqlalchemy.schema import CreateTable, DropTable

from protocol.errors import StorageError

__all__ = [
    "LEGACY_NEWEST",
    "LEGACY_REVISIONS",
    "LEGACY_TABLE",
    "NEVER_REUSED_IDS",
    "baseline_metadata",
    "convert",
    "is_legacy",
]

LEGACY_TABLE = "schema_version"
"""The old runner's version table (one row per applied step)."""

LEGACY_REVISIONS = {3: "0001", 4: "0002"}
"""The Alembic revision whose schema each old step's equals: step 3 is the baseline,
step 4 (the admin API's ``account_bans``) revision 0002. Steps 1-2 convert to 0001."""

LEGACY_NEWEST = max(LEGACY_REVISIONS)
"""The newest step of the old runner."""

NEVER_REUSED_IDS = ("accounts", "characters", "sessions", "items")
"""Tables whose ids are never handed out twice (``AUTOINCREMENT`` on SQLite).

A session id keys a presence, a character id a party membership or invite, an
item id an offer in a trade: a reused one would hand that state to a stranger.
SQLite reuses the largest deleted rowid of a plain ``INTEGER PRIMARY KEY``;
PostgreSQL's sequences never hand a value out twice.
"""


def baseline_metadata() -> MetaData:
    """The schema after the old runner's step 3 (frozen: never edit)."""
    md = MetaData()
    Table(
        "accounts",
        md,
        Column("id", Integer, primary_key=True),
        Column("username", String(32), nullable=False),
        Column("username_key", String(32), nullable=False, unique=True),
        Column("password_hash", String(255), nullable=False),
        Column("created_at", Float, nullable=False),
        Column("last_login_at", Float, nullable=True),
        sqlite_autoincrement=True,
    )
    Table(
        "characters",
        md,
        Column("id", Integer, primary_key=True),
        Column(
            "account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False
        ),
        Column("name", String(32), nullable=False),
        Column("name_key", String(32), nullable=False, unique=True),
        Column("faction", String(64), nullable=False),
        Column("character_class", String(64), nullable=False),
        *(
            Column(name, Integer, nullable=False)
            for name in ("level", "experience", "health", "max_health", "mana", "max_mana")
        ),
        Column("location_id", Integer, nullable=False),
        Column("gold", Integer, nullable=False),
        Column("created_at", Float, nullable=False),
        Index("ix_characters_account", "account_id"),
        sqlite_autoincrement=True,
    )
    Table(
        "sessions",
        md,
        Column("id", Integer, primary_key=True),
        Column("token_hash", String(64), nullable=False, unique=True),
        Column(
            "account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False
        ),
        Column("created_at", Float, nullable=False),
        Column("last_seen_at", Float, nullable=False),
        Column("expires_at", Float, nullable=False),
        Column(
            "character_id",
            Integer,
            ForeignKey("characters.id", ondelete="SET NULL"),
            nullable=True,
        ),
        Column("peer_info", Text, nullable=True),
        Index("ix_sessions_account", "account_id"),
        Index("ix_sessions_expires", "expires_at"),
        sqlite_autoincrement=True,
    )
    Table(
        "world_meta",
        md,
        Column("key", String(64), primary_key=True),
        Column("value", Text, nullable=False),
    )
    Table(
        "shard_owners",
        md,
        Column("shard_id", Integer, primary_key=True, autoincrement=False),
        Column("owner", String(64), nullable=True),
        Column("captured_at", Float, nullable=True),
        Column("captured_by", Integer, nullable=True),
        Column("captured_by_name", String(64), nullable=True),
    )
    Table(
        "world_events",
        md,
        Column("id", Integer, primary_key=True),
        Column("event_type", String(64), nullable=False),
        Column("description", Text, nullable=False),
        Column("data", Text, nullable=True),
        Column("created_at", Float, nullable=False),
        Index("ix_world_events_created", "created_at"),
    )
    Table(
        "parties",
        md,
        Column("party_id", String(64), primary_key=True),
        Column("data", Text, nullable=False),
        Column("updated_at", Float, nullable=False),
    )
    Table(
        "items",
        md,
        Column("id", Integer, primary_key=True),
        Column("template_id", Integer, nullable=False),
        Column(
            "owner_id", Integer, ForeignKey("characters.id", ondelete="CASCADE"), nullable=False
        ),
        Column("created_at", Float, nullable=False),
        Index("ix_items_owner", "owner_id"),
        sqlite_autoincrement=True,
    )
    Table(
        "trades",
        md,
        Column("id", Integer, primary_key=True),
        Column("trade_id", String(64), nullable=False),
        Column("initiator_id", Integer, nullable=False),
        Column("partner_id", Integer, nullable=False),
        Column("exchange", Text, nullable=False),
        Column("completed_at", Float, nullable=False),
    )
    return md


def is_legacy(conn: Connection) -> bool:
    """Whether ``conn``'s database carries the old runner's version table."""
    return inspect(conn).has_table(LEGACY_TABLE)


def convert(conn: Connection) -> tuple[str, list[int]]:
    """Bring a database of the old runner to its revision's schema.

    Returns the revision to stamp it at (:data:`LEGACY_REVISIONS`) and the steps
    up to 3 it missed (run now); a step after 3 is only ever recorded with those
    before it, so its table is there.

    Runs inside the caller's transaction. On SQLite the caller has turned foreign
    keys off (a rebuilt parent table would otherwise cascade into its children)
    and runs ``PRAGMA foreign_key_check`` before committing.
    """
    versions = Table(LEGACY_TABLE, MetaData(), Column("version", Integer))
    applied = {int(v) for v in conn.execute(select(versions.c.version)).scalars()}
    if applied and max(applied) > LEGACY_NEWEST:
        raise StorageError(
            f"database schema version {max(applied)} of the old migration runner is newer "
            f"than this lobby knows ({LEGACY_NEWEST}): run the lobby version that made it"
        )
    if 1 not in applied:
        raise StorageError(
            f"{LEGACY_TABLE} lists no step 1 ({sorted(applied)}): not a lobby database"
        )
    md = baseline_metadata()
    md.create_all(conn, checkfirst=True)  # the tables of a missing step 2
    if conn.dialect.name == "sqlite":
        for name in NEVER_REUSED_IDS:  # step 3
            _rebuild_with_autoincrement(conn, md, md.tables[name])
    conn.execute(DropTable(versions))
    newest = max(applied)
    return LEGACY_REVISIONS[max(newest, 3)], sorted({1, 2, 3} - applied)


def _rebuild_with_autoincrement(conn: Connection, md: MetaData, table: Table) -> None:
    """Rebuild ``table`` as ``INTEGER PRIMARY KEY AUTOINCREMENT``, keeping rows and ids.

    SQLite's procedure for a schema change it cannot ``ALTER``: create the new
    table under a temporary name, copy, drop the old one, rename, recreate the
    indexes. Foreign keys must be off: dropping a parent would cascade into its
    children, and their ``REFERENCES`` name the table, which the rename restores.
    """
    found = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table.name,)
    ).first()
    if found is None or "AUTOINCREMENT" in str(found[0]).upper():
        return  # created just now by create_all, or already rebuilt
    temporary = table.to_metadata(md, name=f"_rebuild_{table.name}")
    quote = conn.dialect.identifier_preparer.quote
    conn.execute(CreateTable(temporary))
    conn.execute(insert(temporary).from_select([c.name for c in table.columns], select(table)))
    conn.execute(DropTable(table))  # its indexes go with it
    conn.exec_driver_sql(f"ALTER TABLE {quote(temporary.name)} RENAME TO {quote(table.name)}")
    for index in table.indexes:
        index.create(conn)
    md.remove(temporary)
