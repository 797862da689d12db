"""Storage: SQLite configuration, migrations, URL handling."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from lobby.storage import (
    MIGRATIONS,
    Database,
    Migration,
    accounts,
    characters,
    normalize_url,
    sessions,
)
from lobby.storage.game_schema import items
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


async def _insert_world(conn: AsyncConnection, n: int) -> None:
    """``n`` accounts, each with a character, a session selecting it and two items."""
    for i in range(1, n + 1):
        await conn.execute(
            insert(accounts).values(
                id=i, username=f"u{i}", username_key=f"u{i}", password_hash="h", created_at=1.0
            )
        )
        await conn.execute(
            insert(characters).values(
                id=i, account_id=i, name=f"C{i}", name_key=f"c{i}", faction="f",
                character_class="k", level=1, experience=0, health=1, max_health=1, mana=1,
                max_mana=1, location_id=1, gold=10 * i, created_at=1.0,
            )
        )  # fmt: skip
        await conn.execute(
            insert(sessions).values(
                id=i, token_hash=f"t{i}", account_id=i, created_at=1.0, last_seen_at=1.0,
                expires_at=99.0, character_id=i,
            )
        )  # fmt: skip
        await conn.execute(
            insert(items), [{"template_id": t, "owner_id": i, "created_at": 1.0} for t in (1, 2)]
        )


async def _snapshot(conn: AsyncConnection) -> dict[str, list[tuple[object, ...]]]:
    out = {}
    for table in (accounts, characters, sessions, items):
        rows = await conn.execute(select(table).order_by(table.c.id))
        out[table.name] = [tuple(r) for r in rows]
    return out


async def test_an_existing_database_upgrades_to_ids_never_reused_with_data_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database made by migrations 1 and 2 (plain INTEGER PRIMARY KEYs, which SQLite
    reuses) keeps every row, id and reference through migration 3; afterwards a deleted
    row's id is never handed out again, in any of the four tables."""
    url = f"sqlite:///{tmp_path}/old.sqlite3"
    old = [m for m in MIGRATIONS if m.version in (1, 2)]
    monkeypatch.setattr("lobby.storage.migrations.MIGRATIONS", old)
    monkeypatch.setitem(items.dialect_kwargs, "sqlite_autoincrement", False)
    db = await Database.open(url, now=1.0)
    async with db.write() as conn:
        await _insert_world(conn, 3)
    async with db.read() as conn:
        assert "AUTOINCREMENT" not in str(
            (await conn.exec_driver_sql("SELECT group_concat(sql) FROM sqlite_master")).scalar()
        )
        before = await _snapshot(conn)
    await db.close()
    monkeypatch.undo()

    db = await Database.open(url, now=2.0)
    try:
        async with db.read() as conn:
            assert await _snapshot(conn) == before
            versions = (await conn.execute(text("SELECT version FROM schema_version"))).scalars()
            assert 3 in set(versions)
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
            assert (await conn.exec_driver_sql("PRAGMA foreign_key_check")).all() == []
            indexes = set(
                (
                    await conn.exec_driver_sql(
                        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
                    )
                ).scalars()
            )
            assert {"ix_characters_account", "ix_sessions_account", "ix_items_owner"} <= indexes
        # the newest row of each table is deleted: the next insert gets a fresh id
        async with db.write() as conn:
            await conn.execute(delete(sessions).where(sessions.c.id == 3))
            await conn.execute(delete(characters).where(characters.c.id == 3))
            await conn.execute(delete(accounts).where(accounts.c.id == 3))
            assert (await conn.execute(select(items.c.id).where(items.c.owner_id == 3))).all() == []
        async with db.write() as conn:
            await _insert_new(conn)
        async with db.read() as conn:
            ids = {
                t.name: (await conn.execute(select(func.max(t.c.id)))).scalar_one()
                for t in (accounts, characters, sessions, items)
            }
        assert ids == {"accounts": 4, "characters": 4, "sessions": 4, "items": 7}
        # the cascade still works after the rebuild (foreign keys are on again)
        async with db.read() as conn:
            assert (await conn.execute(select(func.count()).select_from(items))).scalar() == 5
    finally:
        await db.close()


async def _insert_new(conn: AsyncConnection) -> None:
    account = await conn.execute(
        insert(accounts).values(username="n", username_key="n", password_hash="h", created_at=2.0)
    )
    account_id = account.inserted_primary_key[0]  # type: ignore[index]
    character = await conn.execute(
        insert(characters).values(
            account_id=account_id, name="N", name_key="n", faction="f", character_class="k",
            level=1, experience=0, health=1, max_health=1, mana=1, max_mana=1, location_id=1,
            gold=0, created_at=2.0,
        )
    )  # fmt: skip
    character_id = character.inserted_primary_key[0]  # type: ignore[index]
    await conn.execute(
        insert(sessions).values(
            token_hash="tn", account_id=account_id, created_at=2.0, last_seen_at=2.0,
            expires_at=99.0,
        )
    )  # fmt: skip
    await conn.execute(insert(items).values(template_id=1, owner_id=character_id, created_at=2.0))


async def test_lobbies_opening_one_new_sqlite_file_together_take_turns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/together.sqlite3"
    opened = await asyncio.gather(*(Database.open(url, now=1.0) for _ in range(4)))
    try:
        async with opened[0].read() as conn:
            versions = (await conn.execute(text("SELECT version FROM schema_version"))).scalars()
            assert sorted(versions) == sorted(m.version for m in MIGRATIONS)
    finally:
        for db in opened:
            await db.close()
