"""``python -m mesh``: --version from the package metadata, --log-format json."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import secrets
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


async def test_python_m_mesh_log_format_json_puts_the_peer_id_on_every_line() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mesh", "--lan", "--name", "Solo",
        "--passphrase", secrets.token_hex(8),
        "--interface", "127.0.0.1", "--port", "0", "--json", "-v", "--log-format", "json",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(b"/quit\n"), 30)
    assert proc.returncode == 0
    events = [json.loads(line) for line in out.decode().splitlines()]
    ready = next(e for e in events if e["event"] == "ready")
    records = [json.loads(line) for line in err.decode().splitlines()]
    assert any(r["logger"] == "mesh.node" for r in records)
    assert {r["peer_id"] for r in records} == {ready["peer_id"]}
    assert all(r["level"] in ("INFO", "WARNING", "ERROR") and r["message"] for r in records)
