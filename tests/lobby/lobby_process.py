"""``python -m lobby`` as a child process for tests that need a real one (kill -9, CLI fuzzers).

``start_lobby(data_dir, *args, log=..., SHARDS_X="...")`` starts it on 127.0.0.1 port 0 with cheap
hashing and the REST limits out of the way (each keyword is one more ``SHARDS_*`` variable),
and returns once it printed its address. Its log goes to ``log`` (a file, so a chatty lobby
never blocks on a full pipe).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ROOT", "LobbyProcess", "lobby_process", "start_lobby"]

ROOT = Path(__file__).resolve().parents[2]

FAST_ENV = {
    "SHARDS_ARGON2_TIME_COST": "1",
    "SHARDS_ARGON2_MEMORY_COST": "1024",
    "SHARDS_ARGON2_PARALLELISM": "1",
    "SHARDS_REST_RATE_PER_ADDRESS": "100000",
    "SHARDS_REST_BURST_PER_ADDRESS": "100000",
    "SHARDS_REST_RATE_PER_ACCOUNT": "100000",
    "SHARDS_REST_BURST_PER_ACCOUNT": "100000",
}


@dataclass
class LobbyProcess:
    """A running ``python -m lobby``."""

    proc: asyncio.subprocess.Process
    url: str
    port: int

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs (a crash)."""
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()

    async def stop(self) -> int:
        """SIGTERM and wait for a clean exit; its status."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            await self.kill()
            raise


async def start_lobby(data_dir: Path, *args: str, log: Path, **env: str) -> LobbyProcess:
    """Start ``python -m lobby --port 0 --data-dir data_dir *args`` and wait for its address."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **FAST_ENV, **env}
    with log.open("ab") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "lobby",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            *args,
            cwd=data_dir.parent,
            env=full_env,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
        )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        match = re.fullmatch(r"lobby listening on (http://127\.0\.0\.1:(\d+))\s*", line)
        if not match:
            tail = (await asyncio.to_thread(log.read_text))[-2000:]
            raise AssertionError(f"the lobby did not start: {line!r}; log: {tail}")
    except BaseException:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        raise
    assert match is not None
    return LobbyProcess(proc, match.group(1), int(match.group(2)))


@asynccontextmanager
async def lobby_process(
    data_dir: Path, *args: str, log: Path, **env: str
) -> AsyncIterator[LobbyProcess]:
    """:func:`start_lobby`, killed on the way out whatever happens."""
    lobby = await start_lobby(data_dir, *args, log=log, **env)
    try:
        yield lobby
    finally:
        await lobby.kill()
