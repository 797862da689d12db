"""The example programs run as they stand against a lobby started as README.md says.

Each program is a subprocess with a bounded timeout; the lobby is ``python -m
lobby --port 0`` (and, for the seed's Quick Start, ``examples/run_master_server.py``
with ``SHARDS_PORT=0``), on 127.0.0.1 with its data in tmp_path. Every peer node
binds a free port (``SHARDS_P2P_PORT=0``).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

__all__: list[str] = []

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "SHARDS_P2P_PORT": "0", "SHARDS_HOST": "127.0.0.1"}


async def start_lobby(
    args: list[str], env: dict[str, str]
) -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdout is not None

    async def url() -> str:
        assert process.stdout is not None
        while line := (await process.stdout.readline()).decode():
            if line.startswith("lobby listening on "):
                return line.removeprefix("lobby listening on ").strip()
        raise AssertionError("the lobby exited before listening")

    try:
        return process, await asyncio.wait_for(url(), 30)
    except BaseException:
        process.kill()
        await process.wait()
        raise


async def stop_lobby(process: asyncio.subprocess.Process) -> int:
    if process.returncode is None:
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()
    return process.returncode if process.returncode is not None else -1


async def run_example(*args: str, wait: float = 40.0) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=REPO, env=ENV,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(process.communicate(), wait)
    except TimeoutError:
        process.kill()
        out, _ = await process.communicate()
        raise AssertionError(f"{args} did not finish in {wait} s:\n{out.decode()}") from None
    return process.returncode or 0, out.decode()


@pytest.fixture
async def lobby_url(tmp_path: Path) -> AsyncIterator[str]:
    """``python -m lobby --port 0`` (README.md), its address."""
    args = ["-m", "lobby", "--port", "0", "--data-dir", str(tmp_path / "lobby")]
    process, url = await start_lobby(args, ENV)
    try:
        yield url
    finally:
        assert await stop_lobby(process) == 0


async def test_client_example(lobby_url: str) -> None:
    """With its defaults on a fresh lobby: signs up, plays; the second run logs in."""
    args = ["examples/client.py", "--server", lobby_url, "--seconds", "0.5"]
    code, out = await run_example(*args)
    assert code == 0, out
    assert "Created account username" in out
    assert "Playing Username at location" in out
    assert "[global] Username: Hello, world!" in out
    assert "Current reality: " in out
    code, out = await run_example(*args)  # second run: account and character exist
    assert code == 0, out
    assert "Created account" not in out and "Current reality: " in out
    code, out = await run_example(*args[:3], "--password", "not the password")
    assert code == 1 and "error: " in out and "Traceback" not in out


async def test_lan_example_leaves_cleanly_when_nobody_joins() -> None:
    name = f"Lonely{secrets.token_hex(3)}"
    code, out = await run_example(
        "examples/lan_play.py", "--name", name, "--passphrase", secrets.token_hex(8),
        "--interface", "127.0.0.1", "--port", "0", "--seconds", "1",
    )  # fmt: skip
    assert code == 0, out
    assert "nobody joined; leaving" in out
    assert "Traceback" not in out and "TimeoutError" not in out


async def test_whisper_pair_example(lobby_url: str) -> None:
    code, out = await run_example("examples/whisper_pair.py", "--server", lobby_url)
    assert code == 0, out
    assert "[whisper] Lyra: Meet me by the shard." in out
    assert "whisper delivered via direct" in out
    assert "[party] Lyra: Party up" in out


async def test_run_master_server_example(tmp_path: Path) -> None:
    env = {**ENV, "SHARDS_PORT": "0", "SHARDS_DATA_DIR": str(tmp_path / "quickstart")}
    process, url = await start_lobby(["examples/run_master_server.py"], env)
    try:
        code, out = await run_example("examples/client.py", "--server", url, "--seconds", "0")
        assert code == 0, out
        assert "Current reality: " in out
    finally:
        assert await stop_lobby(process) == 0
