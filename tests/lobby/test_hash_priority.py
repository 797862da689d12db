"""The password hashing threads run nicer than the event loop (Linux per-thread priority)."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from pathlib import Path

import pytest

from lobby.accounts import HASH_NICE, PasswordHashing
from tests.lobby.support import fast_settings


def _my_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def _my_cpus() -> set[int]:
    return os.sched_getaffinity(threading.get_native_id())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
async def test_hashing_threads_yield_the_cpu_to_the_loop(tmp_path: Path) -> None:
    hashing = PasswordHashing(fast_settings(tmp_path))
    try:
        loop_nice = _my_nice()
        worker_nice = await asyncio.get_running_loop().run_in_executor(hashing._pool, _my_nice)
        assert worker_nice == min(19, loop_nice + HASH_NICE)
        assert _my_nice() == loop_nice  # the loop's own thread is untouched
        loop_cpus = _my_cpus()
        worker_cpus = await asyncio.get_running_loop().run_in_executor(hashing._pool, _my_cpus)
        if len(loop_cpus) >= 2:  # one CPU stays free of hashing
            assert worker_cpus == set(sorted(loop_cpus)[:-1])
        else:
            assert worker_cpus == loop_cpus
        assert _my_cpus() == loop_cpus
        assert await hashing.verify(await hashing.hash("pw-123456"), "pw-123456")
    finally:
        await hashing.close()
