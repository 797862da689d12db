"""``python -m lobby`` as a real subprocess: starts, prints its address, answers, stops."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parents[2]


async def test_python_m_lobby_serves_status_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SHARDS_ARGON2_TIME_COST": "1",
        "SHARDS_ARGON2_MEMORY_COST": "1024",
        "SHARDS_ARGON2_PARALLELISM": "1",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lobby",
        "--port",
        "0",
        "--data-dir",
        str(tmp_path / "data"),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        match = re.fullmatch(r"lobby listening on (http://127\.0\.0\.1:(\d+))\s*", line)
        assert match, line
        assert int(match.group(2)) > 0
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{match.group(1)}/api/status") as resp:
                assert resp.status == 200
                body = await resp.json()
        assert body["status"] == "ok" and body["database"] == "sqlite"
        assert (tmp_path / "data" / "lobby.sqlite3").exists()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_python_m_lobby_reports_a_bad_setting(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SHARDS_PORT": "not-a-port"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lobby",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert b"port" in err.lower()


async def test_fresh_clone_runs_python_m_lobby_with_defaults(tmp_path: Path) -> None:
    """As the README says: in a clone, ``python -m lobby`` with no flags (port from env)."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    git = await asyncio.create_subprocess_exec(
        "git",
        "clone",
        "-q",
        "--no-hardlinks",
        str(ROOT),
        str(clone),
        stderr=asyncio.subprocess.PIPE,
    )
    _, git_err = await asyncio.wait_for(git.communicate(), 60)
    assert git.returncode == 0, git_err
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARDS_")}
    env.pop("PYTHONPATH", None)
    env["SHARDS_PORT"] = "0"  # never a fixed port in a test; everything else default
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lobby",
        cwd=clone,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        match = re.fullmatch(r"lobby listening on (http://127\.0\.0\.1:\d+)\s*", line)
        assert match, line
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{match.group(1)}/api/status") as resp:
                assert resp.status == 200
        assert (clone / "shards-data" / "lobby.sqlite3").exists()
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
