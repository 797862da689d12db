"""The password hashing threads (``hash_pool="thread"``) run nicer than the event loop and
off its CPU (Linux per-thread priority and affinity); the worker processes' own test is in
test_password_pool."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from lobby.passwords import HASH_NICE, PasswordHashing, usable_cpus, worker_cpus
from tests.lobby.support import fast_settings


def _nice(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
async def test_hashing_threads_yield_the_cpu_to_the_loop(tmp_path: Path) -> None:
    hashing = PasswordHashing(fast_settings(tmp_path, hash_pool="thread"))
    try:
        assert hashing.mode == "thread"
        assert await hashing.verify(await hashing.hash("pw-123456"), "pw-123456")
        loop_tid = threading.get_native_id()
        workers = [
            t.native_id
            for t in threading.enumerate()
            if t.name.startswith("lobby-argon2") and t.native_id is not None
        ]
        assert workers
        for tid in workers:
            assert _nice(tid) == min(19, _nice(loop_tid) + HASH_NICE)
            assert os.sched_getaffinity(tid) == set(worker_cpus(usable_cpus()))
        assert os.sched_getaffinity(loop_tid) == set(usable_cpus())  # the loop is untouched
    finally:
        await hashing.close()
