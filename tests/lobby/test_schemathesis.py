"""Schemathesis against a live ``python -m lobby``: its OpenAPI is the contract.

Every phase (examples, coverage, fuzzing, stateful), every check (server errors,
status codes, response schemas and headers, negative data rejected, positive data
accepted, ``Allow``, ...), a bounded number of cases, derandomized (the same cases
every run). Any failure fails the test with schemathesis's report. ``/ws`` is left
out: an accepted upgrade turns the connection into a WebSocket, which an HTTP fuzzer
cannot speak (``test_ws_fuzz.py`` covers it).

The lobby's login lockout is set out of reach: the fuzzer's failed logins would
otherwise lock out its own source address (and its token provider) after a few cases.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests.lobby.lobby_process import ROOT, lobby_process

MAX_EXAMPLES = 50
"""Cases per operation and phase (about 2,500 requests: about 20 s on this machine)."""


@pytest.mark.timeout(150)  # a subprocess lobby and a subprocess fuzzer: give a loaded box room
async def test_schemathesis_finds_no_failure(tmp_path: Path) -> None:
    async with lobby_process(
        tmp_path / "data",
        log=tmp_path / "lobby.log",
        SHARDS_LOGIN_MAX_FAILURES_PER_ADDRESS="1000000",
        SHARDS_LOGIN_MAX_FAILURES_PER_ACCOUNT="1000000",
    ) as lobby:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "SCHEMATHESIS_HOOKS": "tests.lobby.schemathesis_hooks",
            "SHARDS_TEST_LOBBY_URL": lobby.url,
        }
        proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{lobby.url}/api/openapi.json",
            "--checks",
            "all",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--generation-deterministic",
            "--workers",
            "1",
            "--request-timeout",
            "20",
            "--suppress-health-check",
            "all",
            "--exclude-path",
            "/ws",
            "--no-color",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), 120)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        report = out.decode(errors="replace")
        assert proc.returncode == 0, report[-12000:]
        assert " passed" in report and "Stateful" in report, report[-4000:]
        lobby_log = await asyncio.to_thread((tmp_path / "lobby.log").read_text)
        assert "Traceback" not in lobby_log, lobby_log[-4000:]
