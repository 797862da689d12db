"""Switching multi-process mode on with a bad Redis or bad cluster settings: a clear refusal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.lobby.cluster.procs import free_port


def _lobby(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lobby", "--port", "0", "--data-dir", str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def test_an_unreachable_redis_stops_the_start_without_showing_its_password(
    tmp_path: Path,
) -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"  # nothing listens there
    done = _lobby(tmp_path, "--redis-url", url)
    assert done.returncode == 1  # a runtime failure, not a usage error
    assert "cannot reach Redis at redis://***@127.0.0.1" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout
    assert "lobby listening" not in done.stdout


def test_a_presence_ttl_shorter_than_the_heartbeat_is_refused(tmp_path: Path) -> None:
    done = _lobby(tmp_path, SHARDS_CLUSTER_HEARTBEAT="5", SHARDS_CLUSTER_PRESENCE_TTL="2")
    assert done.returncode == 2
    assert "cluster_presence_ttl must be longer than cluster_heartbeat" in done.stderr
