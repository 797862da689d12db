"""The lobby listens with the configured backlog (a reconnect storm needs the room)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from lobby import MasterServer
from tests.lobby.support import FakeClock, fast_settings


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to read the backlog")
async def test_the_listening_socket_has_the_configured_backlog(
    tmp_path: Path, clock: FakeClock
) -> None:
    settings = fast_settings(tmp_path / "d", listen_backlog=777)
    async with MasterServer(settings=settings, clock=clock) as server:
        proc = await asyncio.create_subprocess_exec(
            "ss", "-Hltn", f"sport = :{server.port}", stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 10)
    # State Recv-Q Send-Q Local Peer: for a listening socket Send-Q is its backlog
    (line,) = out.decode().strip().splitlines()
    assert int(line.split()[2]) == 777
