"""The lobby's current tables, as SQLAlchemy Core objects shared by every query.

One :data:`metadata` holds every table, so services added later (inventory,
parties, the event log) declare theirs on it and can reference these with
foreign keys. Table creation and changes happen only through the Alembic
revisions of :mod:`lobby.storage.migrations`; these objects describe the schema
after the newest revision (a test compares the two).

Times are stored as float seconds since the epoch (the injectable clock's
unit), names are unique case-insensitively through a ``*_key`` column holding
the case-folded name (portable between SQLite and PostgreSQL, unlike functional
indexes on ``lower()`` with non-ASCII text). Ids of accounts, characters and
sessions are never handed out twice (``AUTOINCREMENT`` on SQLite).
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = ["account_bans", "accounts", "characters", "metadata", "sessions"]

metadata = MetaData()


accounts = Table(
    "accounts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(32), nullable=False),
    Column("username_key", String(32), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_login_at", Float, nullable=True),
    sqlite_autoincrement=True,
)

characters = Table(
    "characters",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "account_id",
        Integer,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("name", String(32), nullable=False),
    Column("name_key", String(32), nullable=False, unique=True),
    Column("faction", String(64), nullable=False),
    Column("character_class", String(64), nullable=False),
    Column("level", Integer, nullable=False),
    Column("experience", Integer, nullable=False),
    Column("health", Integer, nullable=False),
    Column("max_health", Integer, nullable=False),
    Column("mana", Integer, nullable=False),
    Column("max_mana", Integer, nullable=False),
    Column("location_id", Integer, nullable=False),
    Column("gold", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_characters_account", "account_id"),
    sqlite_autoincrement=True,
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column(
        "account_id",
        Integer,
        ForeignKey("accounts.id", ondelete="CASCADE"),
        nullable=False,
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

account_bans = Table(
    "account_bans",
    metadata,
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("reason", String(200), nullable=False),
    Column("banned_at", Float, nullable=False),
    Column("banned_by", String(64), nullable=False),
)
"""Accounts an admin banned (the admin API checks it at login); revision 0002."""
