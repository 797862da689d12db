"""Lobby storage: one schema on SQLite (default) or PostgreSQL, versioned migrations.

``Database`` (engine and ``read()`` / ``write()`` entry points), the table
objects of :mod:`lobby.storage.schema`, and :data:`MIGRATIONS` to which a
service appends its own schema steps.
"""

from __future__ import annotations

from lobby.storage.engine import Database, normalize_url
from lobby.storage.migrations import MIGRATIONS, Migration, create_tables
from lobby.storage.schema import accounts, characters, metadata, schema_version, sessions

__all__ = [
    "MIGRATIONS",
    "Database",
    "Migration",
    "accounts",
    "characters",
    "create_tables",
    "metadata",
    "normalize_url",
    "schema_version",
    "sessions",
]
