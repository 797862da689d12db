"""The PostgreSQL path for real: a throwaway cluster (unix socket only, no TCP port).

Skipped when the PostgreSQL server binaries are not installed or cannot be run as
the ``postgres`` user. The same checks run on SQLite so both paths stay equal.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from lobby import MasterServer
from tests.lobby.support import ApiClient, FakeClock, fast_settings

PG_BIN = Path("/usr/lib/postgresql")


def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(PG_BIN.glob("*/bin/initdb")) if PG_BIN.exists() else []
    return versions[-1].parent if versions else None


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """The URL of a throwaway PostgreSQL server for the module (skips without one)."""
    with throwaway_postgres() as url:
        yield url


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Start a PostgreSQL server in a temporary directory (unix socket only), yield its
    URL, remove it all afterwards; ``pytest.skip`` when there is none to start."""
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not installed")
    as_user: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a postgres user")
        as_user = ["runuser", "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="shards-pg-"))
    try:
        if as_user:
            os.chown(base, pw.pw_uid, pw.pw_gid)
        data = base / "data"
        subprocess.run(
            [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "shards",
             "--no-sync", "-E", "UTF8"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-t", "30",
             "-l", str(base / "log"),
             "-o", f"-c listen_addresses='' -k {base} -c fsync=off", "start"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        try:
            yield f"postgresql://shards@/postgres?host={base}"
        finally:
            subprocess.run(
                [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                capture_output=True,
                timeout=60,
            )
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot start PostgreSQL: {exc.stderr.decode(errors='replace')[:200]}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def _exercise(base_url: str, http: aiohttp.ClientSession) -> tuple[str, int]:
    client = ApiClient(base_url, http)
    token = await client.sign_up("alice")
    heroes = await asyncio.gather(
        *(
            client.call(
                "POST",
                "/api/characters",
                {"name": f"Hero{i}", "faction": "Verdant Pact", "character_class": "Mage"},
            )
            for i in range(8)
        )
    )
    created = [body for status, body, _ in heroes if status == 201]
    refused = {body["code"] for status, body, _ in heroes if status != 201}
    assert len(created) == 5 and refused == {"character_limit"}  # the limit holds under races
    status, err, _ = await client.call(
        "POST",
        "/api/characters",
        {"name": "HERO0", "faction": "Verdant Pact", "character_class": "Mage"},
    )
    assert status == 409  # the limit or the taken name: never a duplicate
    await client.select(created[0]["id"])
    status, _, _ = await client.call("DELETE", f"/api/characters/{created[1]['id']}")
    assert status == 200
    return token, created[0]["id"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_core_flow_and_restart_on_both_databases(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    clock = FakeClock()
    settings = fast_settings(tmp_path / "data")
    async with MasterServer(settings=settings, database_url=url, clock=clock) as server:
        assert server.ctx.db.dialect == backend
        token, kept = await _exercise(server.url, http)
    async with MasterServer(settings=settings, database_url=url, clock=clock) as server:
        client = ApiClient(server.url, http)
        client.token = token
        status, listed, _ = await client.call("GET", "/api/characters")
        assert status == 200 and len(listed["characters"]) == 4
        assert kept in [c["id"] for c in listed["characters"]]
        status, _, _ = await client.call("POST", "/api/auth/logout")
        assert status == 200
        status, _, _ = await client.call("GET", "/api/characters")
        assert status == 401
