"""``--version`` and every version the lobby reports come from the package metadata."""

from __future__ import annotations

import asyncio
import importlib.metadata
import sys
from pathlib import Path

import aiohttp

from lobby import MasterServer
from tests.lobby.support import fast_settings

INSTALLED = importlib.metadata.version("shards-net")


async def test_python_m_lobby_version_is_the_installed_one() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lobby", "--version", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    assert out.decode().split() == ["python", "-m", "lobby", INSTALLED]


async def test_status_openapi_and_metrics_report_it(tmp_path: Path) -> None:
    async with MasterServer(settings=fast_settings(tmp_path)) as server:
        async with aiohttp.ClientSession() as http:
            async with http.get(server.url + "/api/status") as resp:
                assert (await resp.json())["server_version"] == INSTALLED
            async with http.get(server.url + "/api/openapi.json") as resp:
                assert (await resp.json())["info"]["version"] == INSTALLED
            async with http.get(server.url + "/metrics") as resp:
                assert f'version="{INSTALLED}"' in await resp.text()
