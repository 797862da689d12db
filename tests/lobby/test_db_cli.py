"""``python -m lobby db upgrade|current|revision`` as an operator runs them: subprocesses."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from lobby.storage.migrations import heads
from tests.lobby.test_migrations import load_old_runner_database, rows

NEWEST = f"{', '.join(heads())} (newest)"


def lobby_db(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SHARDS_")}
    return subprocess.run(
        [sys.executable, "-m", "lobby", "db", *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_db_upgrade_converts_an_old_runner_database_with_its_data(tmp_path: Path) -> None:
    path = load_old_runner_database(tmp_path / "old.sqlite3", 2)
    before = rows(path)
    url = f"sqlite:///{path}"

    found = lobby_db("current", "--database-url", url, cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    assert "made by the old migration runner" in found.stdout
    assert lobby_db("current", "--check", "--database-url", url, cwd=tmp_path).returncode == 1

    done = lobby_db("upgrade", "--database-url", url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "converted the database of the old migration runner (steps run: 3)" in done.stdout
    assert f"at revision {NEWEST}" in done.stdout
    assert rows(path) == before

    now = lobby_db("current", "--check", "--database-url", url, cwd=tmp_path)
    assert (now.returncode, now.stdout.strip()) == (0, NEWEST)
    again = lobby_db("upgrade", "--database-url", url, cwd=tmp_path)
    assert (again.returncode, again.stdout.strip()) == (0, f"already at revision {NEWEST}")


def test_db_commands_find_the_database_the_lobby_would_open(tmp_path: Path) -> None:
    """No flag: ``SHARDS_DATA_DIR`` (as for the lobby), SQLite file ``lobby.sqlite3`` in it."""
    empty = lobby_db("current", cwd=tmp_path, env={"SHARDS_DATA_DIR": str(tmp_path / "d")})
    assert empty.returncode == 1 and "no database at" in empty.stderr
    assert not (tmp_path / "d").exists()  # `current` creates nothing

    made = lobby_db("upgrade", cwd=tmp_path, env={"SHARDS_DATA_DIR": str(tmp_path / "d")})
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == f"upgraded at revision {NEWEST}"
    con = sqlite3.connect(tmp_path / "d" / "lobby.sqlite3")
    try:
        assert con.execute("SELECT version_num FROM alembic_version").fetchall() == [heads()]
    finally:
        con.close()
    flag = lobby_db("current", "--data-dir", str(tmp_path / "d"), cwd=tmp_path)
    assert (flag.returncode, flag.stdout.strip()) == (0, NEWEST)


def test_db_errors_have_their_exit_status_and_a_message(tmp_path: Path) -> None:
    usage = lobby_db("frobnicate", cwd=tmp_path)
    assert usage.returncode == 2 and "invalid choice" in usage.stderr
    bad_url = lobby_db("upgrade", "--database-url", "mysql://u@h/d", cwd=tmp_path)
    assert bad_url.returncode == 2 and "unsupported database 'mysql'" in bad_url.stderr

    url = f"sqlite:///{tmp_path}/future.sqlite3"
    assert lobby_db("upgrade", "--database-url", url, cwd=tmp_path).returncode == 0
    con = sqlite3.connect(tmp_path / "future.sqlite3")
    with con:
        con.execute("UPDATE alembic_version SET version_num = '9999'")
    con.close()
    refused = lobby_db("upgrade", "--database-url", url, cwd=tmp_path)
    assert refused.returncode == 1
    assert "revision 9999, which this lobby does not know" in refused.stderr
    unknown = lobby_db("current", "--database-url", url, cwd=tmp_path)
    assert unknown.returncode == 1 and "unknown to this lobby" in unknown.stderr


def test_db_revision_writes_the_next_revision_after_the_newest(tmp_path: Path) -> None:
    (newest,) = heads()
    after = f"{int(newest) + 1:04d}"
    versions = tmp_path / "versions"
    versions.mkdir()
    made = lobby_db("revision", "-m", "bans table", "--into", str(versions), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    (written,) = versions.glob("*.py")
    assert written.name == f"v{after}_bans_table.py"
    source = written.read_text()
    assert f'revision: str = "{after}"' in source
    assert f'down_revision: str | Sequence[str] | None = "{newest}"' in source
    compile(source, str(written), "exec")


def test_upgrades_started_together_in_several_processes_take_turns(tmp_path: Path) -> None:
    """Four processes on one new SQLite file (lobbies or jobs started together): one
    creates the schema, the others wait for its write lock and find nothing to do."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SHARDS_")}
    url = f"sqlite:///{tmp_path}/together.sqlite3"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "lobby", "db", "upgrade", "--database-url", url],
            cwd=tmp_path,
            env=clean,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in outputs]
    said = sorted(out.strip() for out, _ in outputs)
    assert said == [f"already at revision {NEWEST}"] * 3 + [f"upgraded at revision {NEWEST}"]
