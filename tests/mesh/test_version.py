"""``python -m mesh --version`` reads the installed package metadata."""

from __future__ import annotations

import asyncio
import importlib.metadata
import sys


async def test_python_m_mesh_version_is_the_installed_one() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mesh", "--version", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    assert out.decode().split() == [
        "python",
        "-m",
        "mesh",
        importlib.metadata.version("shards-net"),
    ]
