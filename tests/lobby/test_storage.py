"""Storage: SQLite configuration, migrations, URL handling."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import insert, select, text

from lobby.storage import MIGRATIONS, Database, Migration, accounts, normalize_url
from protocol.errors import ConfigError, StorageError


async def test_sqlite_is_wal_with_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    db = await Database.open(f"sqlite:///{tmp_path}/sub/dir/x.sqlite3", now=1.0)
    try:
        async with db.read() as conn:
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
            assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() == 10_000
            rows = (await conn.execute(text("SELECT version FROM schema_version"))).all()
            assert [r[0] for r in rows] == [m.version for m in MIGRATIONS]
    finally:
        await db.close()


async def test_migrations_apply_once_and_a_failed_one_rolls_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/m.sqlite3"
    db = await Database.open(url, now=1.0)
    async with db.write() as conn:
        await conn.execute(
            insert(accounts).values(
                username="a", username_key="a", password_hash="h", created_at=1.0
            )
        )
    await db.close()

    def broken(conn: object) -> None:
        raise RuntimeError("boom")

    MIGRATIONS.append(Migration(50, "broken", broken))
    try:
        with pytest.raises(StorageError, match="migration 50"):
            await Database.open(url, now=2.0)
    finally:
        MIGRATIONS.pop()
    db = await Database.open(url, now=3.0)  # reopening applies nothing new, keeps data
    try:
        async with db.read() as conn:
            assert (await conn.execute(select(accounts.c.username))).scalars().all() == ["a"]
            versions = (await conn.execute(text("SELECT version FROM schema_version"))).all()
            assert [v[0] for v in versions] == sorted(m.version for m in MIGRATIONS)
    finally:
        await db.close()


async def test_a_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/n.sqlite3"
    db = await Database.open(url, now=1.0)
    async with db.write() as conn:
        await conn.execute(
            text("INSERT INTO schema_version (version, description, applied_at) VALUES (7, 'x', 1)")
        )
    await db.close()
    with pytest.raises(StorageError, match="newer"):
        await Database.open(url, now=1.0)


def test_urls_pick_the_async_drivers() -> None:
    assert normalize_url("sqlite:////tmp/x.db").drivername == "sqlite+aiosqlite"
    pg = normalize_url("postgresql://u:p@db.example:5432/shards")
    assert pg.drivername == "postgresql+asyncpg" and pg.database == "shards"
    assert normalize_url("postgresql+asyncpg://u@h/d").drivername == "postgresql+asyncpg"
    for bad in ("mysql://u@h/d", "sqlite://", "sqlite:///:memory:", "::::"):
        with pytest.raises(ConfigError):
            normalize_url(bad)
