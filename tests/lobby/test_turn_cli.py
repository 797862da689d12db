"""``python -m lobby --turn-url ... --turn-secret ...``: the lobby issues TURN credentials."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp

from protocol.turn import verify_turn_rest_credentials
from tests.lobby.support import ApiClient

ROOT = Path(__file__).resolve().parents[2]
SECRET = "cli-turn-secret"  # noqa: S105 - a test secret


def lobby_env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SHARDS_ARGON2_TIME_COST": "1",
        "SHARDS_ARGON2_MEMORY_COST": "1024",
        "SHARDS_ARGON2_PARALLELISM": "1",
    }


async def test_turn_flags_reach_the_credentials_endpoint(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lobby",
        "--port",
        "0",
        "--data-dir",
        str(tmp_path / "data"),
        "--turn-url",
        "turn:turn.example:3478?transport=udp",
        "--turn-url",
        "turn:turn.example:3478?transport=tcp,turns:turn.example:5349",
        "--turn-secret",
        SECRET,
        cwd=tmp_path,
        env=lobby_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        match = re.fullmatch(r"lobby listening on (http://127\.0\.0\.1:\d+)\s*", line)
        assert match, line
        async with aiohttp.ClientSession() as http:
            client = ApiClient(match.group(1), http)
            await client.register("turnuser")
            await client.login("turnuser")
            hero = await client.create_character("Turnhero", "Crimson Covenant", "Warrior")
            await client.select(int(hero["id"]))
            status, ice, _ = await client.call("GET", "/api/turn/credentials")
        assert status == 200, ice
        assert ice["turn_urls"] == [
            "turn:turn.example:3478?transport=udp",
            "turn:turn.example:3478?transport=tcp",
            "turns:turn.example:5349",
        ]
        assert ice["username"].endswith(f":{hero['id']}")
        assert SECRET not in str(ice)
        now = int(ice["username"].partition(":")[0]) - ice["ttl"]
        verify_turn_rest_credentials(SECRET, ice["username"], ice["password"], now=now)
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0
        assert SECRET.encode() not in err  # never logged
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_turn_url_without_a_secret_is_refused_at_start(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lobby",
        "--port",
        "0",
        "--data-dir",
        str(tmp_path / "data"),
        "--turn-url",
        "turn:turn.example:3478",
        cwd=tmp_path,
        env=lobby_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert b"turn_secret" in err
