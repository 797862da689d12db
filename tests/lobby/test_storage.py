"""Storage: SQLite configuration, URL handling, lobbies opening one new file together.

Migrations (Alembic, the old runner's databases, ``python -m lobby db``) are in
test_migrations.py and test_db_cli.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text

from lobby.storage import (
    Database,
    normalize_url,
)
from lobby.storage.migrations import heads
from protocol.errors import ConfigError


async def test_sqlite_is_wal_with_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    db = await Database.open(f"sqlite:///{tmp_path}/sub/dir/x.sqlite3", now=1.0)
    try:
        async with db.read() as conn:
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
            assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() == 10_000
            rows = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
            assert tuple(r[0] for r in rows) == heads()
    finally:
        await db.close()


def test_urls_pick_the_async_drivers() -> None:
    assert normalize_url("sqlite:////tmp/x.db").drivername == "sqlite+aiosqlite"
    pg = normalize_url("postgresql://u:p@db.example:5432/shards")
    assert pg.drivername == "postgresql+asyncpg" and pg.database == "shards"
    assert normalize_url("postgresql+asyncpg://u@h/d").drivername == "postgresql+asyncpg"
    for bad in ("mysql://u@h/d", "sqlite://", "sqlite:///:memory:", "::::"):
        with pytest.raises(ConfigError):
            normalize_url(bad)


async def test_lobbies_opening_one_new_sqlite_file_together_take_turns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/together.sqlite3"
    opened = await asyncio.gather(*(Database.open(url, now=1.0) for _ in range(4)))
    try:
        async with opened[0].read() as conn:
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
            assert tuple(v[0] for v in versions) == heads()
    finally:
        for db in opened:
            await db.close()
