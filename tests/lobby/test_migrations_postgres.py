"""Migrations on PostgreSQL for real (a throwaway cluster, see test_postgres.py): a
database of the old hand-written runner converts with its data and sequences intact,
and a new one is created by the revisions exactly as the table objects describe it."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import Column, Float, Integer, String, Table, insert, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from lobby.storage import Database, accounts
from lobby.storage.legacy import baseline_metadata
from lobby.storage.migrations import heads, target_metadata
from tests.lobby.test_migrations import schema_differences
from tests.lobby.test_postgres import postgres_url

__all__ = ["postgres_url"]  # the cluster fixture, imported for pytest


async def _new_database(url: str) -> str:
    name = f"m_{uuid.uuid4().hex[:12]}"
    engine = create_async_engine(
        url.replace("postgresql://", "postgresql+asyncpg://"), isolation_level="AUTOCOMMIT"
    )
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()
    return url.replace("/postgres?", f"/{name}?")


async def test_an_old_runner_database_on_postgres_upgrades_with_its_data_intact(
    postgres_url: str,
) -> None:
    url = await _new_database(postgres_url)
    old = baseline_metadata()  # what the old runner's steps 1-3 made on PostgreSQL
    versions = Table(
        "schema_version",
        old,
        Column("version", Integer, primary_key=True, autoincrement=False),
        Column("description", String(200), nullable=False),
        Column("applied_at", Float, nullable=False),
    )
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(old.create_all)
            await conn.execute(
                insert(versions),
                [{"version": v, "description": f"step {v}", "applied_at": 1.0} for v in (1, 2, 3)],
            )
            olds = old.tables
            for i in (1, 2, 3):
                await conn.execute(
                    insert(olds["accounts"]).values(
                        username=f"u{i}", username_key=f"u{i}", password_hash="h", created_at=1.0
                    )
                )
            await conn.execute(
                insert(olds["characters"]).values(
                    account_id=2, name="C", name_key="c", faction="f", character_class="k",
                    level=3, experience=4, health=5, max_health=6, mana=7, max_mana=8,
                    location_id=9, gold=10, created_at=11.0,
                )
            )  # fmt: skip
            await conn.execute(
                insert(olds["items"]).values(template_id=1, owner_id=1, created_at=1.0)
            )
            await conn.execute(insert(olds["world_meta"]).values(key="reality", value='"ember"'))
            await conn.execute(olds["accounts"].delete().where(olds["accounts"].c.id == 3))
        async with engine.connect() as conn:
            before = {
                name: (await conn.execute(select(t).order_by(*t.primary_key.columns))).all()
                for name, t in olds.items()
                if name != "schema_version"
            }
    finally:
        await engine.dispose()

    db = await Database.open(url, now=2.0)
    try:
        async with db.read() as conn:
            tables = target_metadata().tables
            after = {
                name: (await conn.execute(select(t).order_by(*t.primary_key.columns))).all()
                for name, t in tables.items()
            }
            assert after.pop("account_bans") == []  # revision 0002 after the conversion
            for later in ("engagements", "engagement_members", "shared_fences"):  # 0003
                assert after.pop(later) == []
            assert after == before
            found = await conn.execute(text("SELECT to_regclass('schema_version')"))
            assert found.scalar() is None
            revision = await conn.execute(text("SELECT version_num FROM alembic_version"))
            assert tuple(revision.scalars()) == heads()
            assert await conn.run_sync(schema_differences) == []
        async with db.write() as conn:
            new = await conn.execute(
                insert(accounts).values(
                    username="n", username_key="n", password_hash="h", created_at=2.0
                )
            )
        assert new.inserted_primary_key[0] == 4  # the sequence went on: 3 stays unused
    finally:
        await db.close()


async def test_a_new_postgres_database_matches_the_table_objects(postgres_url: str) -> None:
    url = await _new_database(postgres_url)
    db = await Database.open(url, now=1.0)
    try:
        async with db.read() as conn:
            assert await conn.run_sync(schema_differences) == []
    finally:
        await db.close()


async def test_lobbies_opening_one_new_postgres_database_together_take_turns(
    postgres_url: str,
) -> None:
    url = await _new_database(postgres_url)
    opened = await asyncio.gather(*(Database.open(url, now=1.0) for _ in range(4)))
    try:
        async with opened[0].read() as conn:
            revision = await conn.execute(text("SELECT version_num FROM alembic_version"))
            assert tuple(revision.scalars()) == heads()
    finally:
        for db in opened:
            await db.close()
