"""Migrations on Alembic: a database made by the old hand-written runner upgrades with its
data intact, the revisions match the table objects, a failed revision leaves nothing, a
database from a newer lobby is refused, lobbies starting together take turns.

The old runner's databases are SQL dumps it wrote (``tests/lobby/data/old_runner_v*.sql``):
steps 1-2 (before ids were made never-reused), 1-3, and 1-4 (its newest: account bans).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, delete, func, insert, select

from lobby.storage import VERSION_LOCATIONS, Database, accounts, characters, sessions
from lobby.storage.game_schema import items
from lobby.storage.legacy import NEVER_REUSED_IDS
from lobby.storage.migrations import heads, target_metadata
from protocol.errors import StorageError
from tests.lobby.support import branch_revision

DATA = Path(__file__).parent / "data"
TABLES = (
    "accounts", "characters", "sessions", "world_meta", "shard_owners", "world_events",
    "parties", "items", "trades", "account_bans",
)  # fmt: skip


def load_old_runner_database(path: Path, steps: int) -> Path:
    """Write the old runner's database (steps 1..``steps``) to ``path``."""
    con = sqlite3.connect(path)
    try:
        con.executescript((DATA / f"old_runner_v{steps}.sql").read_text())
    finally:
        con.close()
    return path


def rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every lobby table there, in primary key order (a missing one: empty)."""
    con = sqlite3.connect(path)
    try:
        there = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return {
            t: con.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() if t in there else []  # noqa: S608
            for t in TABLES
        }
    finally:
        con.close()


def schema_differences(conn: Connection) -> list[object]:
    """What autogenerate would write: the database against the table objects."""
    diff = compare_metadata(MigrationContext.configure(conn), target_metadata())
    return [d for d in diff if not (isinstance(d, tuple) and d[1:2] == ("alembic_version",))]


async def _new_account(db: Database, name: str) -> int:
    async with db.write() as conn:
        result = await conn.execute(
            insert(accounts).values(
                username=name, username_key=name, password_hash="h", created_at=5.0
            )
        )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


@pytest.mark.parametrize("steps", [2, 3, 4])
async def test_a_database_made_by_the_old_runner_upgrades_with_its_data_intact(
    tmp_path: Path, steps: int
) -> None:
    path = load_old_runner_database(tmp_path / "old.sqlite3", steps)
    before = rows(path)
    assert before["accounts"] and before["items"] and before["trades"]
    assert bool(before["account_bans"]) == (steps == 4)

    db = await Database.open(f"sqlite:///{path}", now=2.0)
    try:
        async with db.read() as conn:
            names = set((await conn.exec_driver_sql("SELECT name FROM sqlite_master")).scalars())
            assert "schema_version" not in names
            assert {"ix_characters_account", "ix_sessions_account", "ix_items_owner"} <= names
            versions = (await conn.exec_driver_sql("SELECT version_num FROM alembic_version")).all()
            assert tuple(v[0] for v in versions) == heads() == ("0003",)
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
            assert (await conn.exec_driver_sql("PRAGMA foreign_key_check")).all() == []
            for name in NEVER_REUSED_IDS:
                sql = await conn.exec_driver_sql(
                    "SELECT sql FROM sqlite_master WHERE name = ?", (name,)
                )
                assert "AUTOINCREMENT" in sql.scalar_one()
            assert await conn.run_sync(schema_differences) == []
        assert rows(path) == before

        # ids: a deleted one is never handed out again (step 3 kept the old runner's counter)
        first = await _new_account(db, "new1")
        assert first == (3 if steps == 2 else 4)  # step 3 kept deleted account 3 unused
        async with db.write() as conn:
            await conn.execute(delete(accounts).where(accounts.c.id == first))
        assert await _new_account(db, "new2") == first + 1

        # foreign keys are enforced again: deleting an account cascades
        async with db.write() as conn:
            await conn.execute(delete(accounts).where(accounts.c.id == 1))
        async with db.read() as conn:
            for table, column in ((characters, "account_id"), (sessions, "account_id")):
                left = await conn.execute(
                    select(func.count()).select_from(table).where(table.c[column] == 1)
                )
                assert left.scalar() == 0
            owned = await conn.execute(select(func.count()).select_from(items))
            assert owned.scalar() == 2  # character 2's two items
    finally:
        await db.close()

    again = await Database.open(f"sqlite:///{path}", now=3.0)  # nothing left to do
    await again.close()


async def test_the_revisions_create_exactly_the_table_objects(tmp_path: Path) -> None:
    """Autogenerate finds nothing to write on a new database: revisions and models agree.

    It does not see ``AUTOINCREMENT``; the table definitions are compared with the old
    runner's own instead (column order aside, SQLite keeps the CREATE text).
    """
    db = await Database.open(f"sqlite:///{tmp_path}/new.sqlite3", now=1.0)
    try:
        async with db.read() as conn:
            assert await conn.run_sync(schema_differences) == []
            new = dict((await conn.exec_driver_sql(_TABLE_SQL)).all())
    finally:
        await db.close()
    old_db = await Database.open(
        f"sqlite:///{load_old_runner_database(tmp_path / 'old.sqlite3', 3)}", now=1.0
    )
    try:
        async with old_db.read() as conn:
            old = dict((await conn.exec_driver_sql(_TABLE_SQL)).all())
    finally:
        await old_db.close()
    assert {k: _normalized(v) for k, v in new.items()} == {
        k: _normalized(v) for k, v in old.items()
    }


_TABLE_SQL = "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name"


def _normalized(sql: str) -> tuple[str, list[str]]:
    """A CREATE statement: its head and its clauses, quoting and clause order aside."""
    sql = " ".join(sql.replace('"', "").split())
    if "(" not in sql:
        return sql, []
    head, body = sql[: sql.index("(")], sql[sql.index("(") + 1 : sql.rindex(")")]
    return head.strip(), sorted(part.strip() for part in body.split(","))


BROKEN_REVISION = branch_revision(
    "t100",
    "test_broken",
    """
    op.create_table("half_done", sa.Column("id", sa.Integer, primary_key=True))
    op.execute("INSERT INTO accounts (username, username_key, password_hash, created_at) "
               "VALUES ('x', 'x', 'h', 1)")
    raise RuntimeError("boom in revision t100")
    """,
)


async def test_a_failed_revision_leaves_the_database_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every pending revision commits together: the baseline made before the failing
    one is rolled back too, and the next start begins from the same empty file."""
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "t100_broken.py").write_text(BROKEN_REVISION)
    url = f"sqlite:///{tmp_path}/m.sqlite3"
    monkeypatch.setattr(
        "lobby.storage.migrations.VERSION_LOCATIONS", [*VERSION_LOCATIONS, versions]
    )
    with pytest.raises(StorageError, match="boom in revision t100"):
        await Database.open(url, now=1.0)
    con = sqlite3.connect(tmp_path / "m.sqlite3")
    try:
        assert con.execute("SELECT name FROM sqlite_master").fetchall() == []
    finally:
        con.close()
    monkeypatch.undo()
    db = await Database.open(url, now=2.0)
    await db.close()


SERVICE_REVISION = branch_revision(
    "n001",
    "notes",
    """
    op.create_table(
        "notes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("character_id", sa.Integer, sa.ForeignKey("characters.id"), nullable=False),
    )
    """,
    downgrade='op.drop_table("notes")',
)


async def test_a_service_ships_its_own_revisions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "n001_notes.py").write_text(SERVICE_REVISION)
    monkeypatch.setattr(
        "lobby.storage.migrations.VERSION_LOCATIONS", [*VERSION_LOCATIONS, versions]
    )
    path = load_old_runner_database(tmp_path / "old.sqlite3", 3)
    db = await Database.open(f"sqlite:///{path}", now=1.0)
    try:
        async with db.read() as conn:
            heads_now = await conn.exec_driver_sql("SELECT version_num FROM alembic_version")
            assert "n001" in set(heads_now.scalars())
            await conn.exec_driver_sql("SELECT id, character_id FROM notes")
    finally:
        await db.close()


async def test_a_database_from_a_newer_lobby_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/n.sqlite3"
    db = await Database.open(url, now=1.0)
    async with db.write() as conn:
        await conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    await db.close()
    with pytest.raises(StorageError, match="revision 9999, which this lobby does not know"):
        await Database.open(url, now=1.0)

    old = load_old_runner_database(tmp_path / "old.sqlite3", 3)
    con = sqlite3.connect(old)
    with con:
        con.execute("INSERT INTO schema_version VALUES (5, 'from the future', 1.0)")
    con.close()
    before = rows(old)
    with pytest.raises(StorageError, match="version 5 of the old migration runner is newer"):
        await Database.open(f"sqlite:///{old}", now=1.0)
    assert rows(old) == before


async def test_lobbies_opening_an_old_database_together_convert_it_once(tmp_path: Path) -> None:
    path = load_old_runner_database(tmp_path / "old.sqlite3", 2)
    before = rows(path)
    opened = await asyncio.gather(*(Database.open(f"sqlite:///{path}", now=1.0) for _ in range(4)))
    for db in opened:
        await db.close()
    assert rows(path) == before
    con = sqlite3.connect(path)
    try:
        assert con.execute("SELECT version_num FROM alembic_version").fetchall() == [heads()]
    finally:
        con.close()


async def test_one_process_migrates_several_databases_at_once(tmp_path: Path) -> None:
    """Alembic's ``context`` is process-global: upgrades of different files in one event
    loop (say, several lobbies in one test process) must not interleave inside it."""
    opened = await asyncio.gather(
        *(Database.open(f"sqlite:///{tmp_path}/db{i}.sqlite3", now=1.0) for i in range(3))
    )
    for db in opened:
        await db.close()
    for i in range(3):
        con = sqlite3.connect(tmp_path / f"db{i}.sqlite3")
        try:
            assert con.execute("SELECT version_num FROM alembic_version").fetchall() == [heads()]
        finally:
            con.close()
