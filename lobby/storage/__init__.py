"""Lobby storage: one schema on SQLite (default) or PostgreSQL, migrated by Alembic.

``Database`` (engine and ``read()`` / ``write()`` entry points), the table
objects of :mod:`lobby.storage.schema`, and :data:`VERSION_LOCATIONS` to which a
service shipping its own tables appends its directory of Alembic revisions.
"""

from __future__ import annotations

from lobby.storage.engine import Database, build_engine, normalize_url
from lobby.storage.migrations import VERSION_LOCATIONS
from lobby.storage.schema import accounts, characters, metadata, sessions

__all__ = [
    "VERSION_LOCATIONS",
    "Database",
    "accounts",
    "build_engine",
    "characters",
    "metadata",
    "normalize_url",
    "sessions",
]
