"""The password hashing pool: worker processes that end with the lobby, a FIFO gate with a
bounded queue (503 past it), recovery from a dead worker, and the 1-CPU case."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import lobby.passwords
from lobby import MasterServer
from lobby.passwords import (
    HashGate,
    HashQueueFullError,
    PasswordHashing,
    hash_slots,
    usable_cpus,
    worker_cpus,
)
from protocol.errors import ErrorCode, LobbyError
from tests.lobby.support import PASSWORD, ApiClient, FakeClock, fast_settings, signed_up

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Wait (bounded) until ``condition`` holds; the loop runs everything else meanwhile."""
    for _ in range(5000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"never happened: {what}")


def _children() -> set[int]:
    """Live child processes of this process (all its threads' children)."""
    found: set[int] = set()
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/children") as fh:
            found.update(int(pid) for pid in fh.read().split())
    return found


def _exists(pid: int) -> bool:
    """True while ``pid`` is a process, a zombie included."""
    return os.path.exists(f"/proc/{pid}")


def _cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        return fh.read().replace(b"\0", b" ").decode()


# -- the gate -------------------------------------------------------------------------------


async def test_gate_admits_in_arrival_order_and_refuses_past_its_queue() -> None:
    gate = HashGate(slots=1, queue_max=2)
    order: list[str] = []

    async def job(name: str, done: asyncio.Event) -> None:
        await gate.acquire()
        order.append(name)
        await done.wait()
        gate.release()

    events = {name: asyncio.Event() for name in "abc"}
    tasks = [asyncio.create_task(job("a", events["a"]))]
    await _until(lambda: gate.running == 1, "a runs")
    tasks += [asyncio.create_task(job(n, events[n])) for n in "bc"]
    await _until(lambda: gate.waiting == 2, "b and c wait")
    with pytest.raises(HashQueueFullError):
        await gate.acquire()  # a third waiter is one too many
    for name in "abc":
        events[name].set()
    await asyncio.gather(*tasks)
    assert order == ["a", "b", "c"]
    assert (gate.running, gate.waiting) == (0, 0)


async def test_gate_a_cancelled_waiter_gives_up_its_place_not_a_slot() -> None:
    gate = HashGate(slots=1, queue_max=4)
    await gate.acquire()
    quitter = asyncio.create_task(gate.acquire())
    stayer = asyncio.create_task(gate.acquire())
    await _until(lambda: gate.waiting == 2, "two wait")
    quitter.cancel()
    await _until(lambda: gate.waiting == 1, "the quitter left")
    gate.release()
    await stayer  # the slot went to the one still waiting
    assert (gate.running, gate.waiting) == (1, 0)
    gate.release()
    assert gate.running == 0


async def test_gate_close_refuses_the_waiters() -> None:
    gate = HashGate(slots=1, queue_max=4)
    await gate.acquire()
    waiter = asyncio.create_task(gate.acquire())
    await _until(lambda: gate.waiting == 1, "one waits")
    gate.close()
    with pytest.raises(LobbyError) as err:
        await waiter
    assert err.value.code is ErrorCode.UNAVAILABLE


def test_default_slots_leave_a_cpu_to_the_loop_and_one_cpu_still_hashes() -> None:
    assert [hash_slots(n) for n in (1, 2, 4, 8)] == [1, 1, 3, 7]
    assert worker_cpus([3]) == [3]  # one CPU: share it (the priority does the yielding)
    assert worker_cpus([0, 1]) == [0]
    assert worker_cpus([0, 1, 2, 3]) == [0, 1, 2]


# -- the worker processes -------------------------------------------------------------------


@pytest.fixture
async def hashing(tmp_path: Path) -> AsyncIterator[PasswordHashing]:
    """A process pool with the cheap test cost, closed after the test."""
    pool = PasswordHashing(fast_settings(tmp_path, hash_pool="process"))
    try:
        yield pool
    finally:
        await pool.close()


@linux_only
async def test_worker_processes_hash_for_the_lobby_and_end_with_stop(
    tmp_path: Path, clock: FakeClock
) -> None:
    before = _children()
    settings = fast_settings(tmp_path / "data", hash_pool="process")
    server = MasterServer(settings=settings, clock=clock)
    await server.start()
    try:
        hashing = server.ctx.accounts.hashing
        assert hashing.worker_pids() == []  # started lazily
        async with aiohttp.ClientSession() as http:
            client = await signed_up(server.url, http, "poolpaula")
            status, err, _ = await client.call(
                "POST", "/api/auth/login", {"username": "poolpaula", "password": "wrong one"}
            )
            assert (status, err["code"]) == (401, "invalid_credentials")
            status, err, _ = await client.call(
                "POST", "/api/auth/login", {"username": "nobody", "password": PASSWORD}
            )
            assert (status, err["code"]) == (401, "invalid_credentials")
        workers = hashing.worker_pids()
        assert hashing.mode == "process"
        assert 1 <= len(workers) <= hashing.workers
        assert set(workers) <= _children() - before
        for pid in workers:  # a fresh interpreter running the worker, not a fork of the lobby
            assert "_hashworker.py" in _cmdline(pid)
    finally:
        await server.stop()
    assert not set(workers) & _children()
    assert _children() <= before
    for pid in workers:
        assert not _exists(pid)  # ended and reaped, not a zombie


@linux_only
async def test_worker_processes_run_nicer_and_off_the_loops_cpu(hashing: PasswordHashing) -> None:
    assert await hashing.verify(await hashing.hash("pw-123456"), "pw-123456")
    [pid] = hashing.worker_pids()
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, mine + lobby.passwords.HASH_NICE)
    assert os.sched_getaffinity(pid) == set(worker_cpus(usable_cpus()))
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine


@linux_only
async def test_one_cpu_gets_one_worker_on_that_cpu(tmp_path: Path) -> None:
    tid = threading.get_native_id()
    cpus = os.sched_getaffinity(tid)
    only = min(cpus)
    os.sched_setaffinity(tid, {only})  # this thread is the "1-core machine"
    try:
        hashing = PasswordHashing(fast_settings(tmp_path, hash_pool="process"))
        try:
            assert hashing.workers == 1
            assert await hashing.verify(await hashing.hash("pw-123456"), "pw-123456")
            [pid] = hashing.worker_pids()
            assert os.sched_getaffinity(pid) == {only}
        finally:
            await hashing.close()
    finally:
        os.sched_setaffinity(tid, cpus)


@linux_only
async def test_a_killed_worker_costs_one_request_not_the_pool(hashing: PasswordHashing) -> None:
    stored = await hashing.hash("pw-123456")
    [first] = hashing.worker_pids()
    os.kill(first, signal.SIGKILL)  # the fault: out of memory, an operator's kill -9
    with pytest.raises(LobbyError) as err:
        await hashing.verify(stored, "pw-123456")
    assert err.value.code is ErrorCode.UNAVAILABLE
    assert err.value.details["retry_after"] > 0
    assert await hashing.verify(stored, "pw-123456")  # a new worker took over
    [second] = hashing.worker_pids()
    assert second != first
    assert not _exists(first)


@linux_only
async def test_workers_ignore_a_ctrl_c_sent_to_the_process_group(
    hashing: PasswordHashing,
) -> None:
    stored = await hashing.hash("pw-123456")
    [pid] = hashing.worker_pids()
    os.kill(pid, signal.SIGINT)
    os.kill(pid, signal.SIGTERM)
    assert await hashing.verify(stored, "pw-123456")
    assert hashing.worker_pids() == [pid]


async def test_hostile_passwords_hash_and_verify_in_a_worker(hashing: PasswordHashing) -> None:
    for password in ("\ud800 lone surrogate", "line\nbreak", "x" * 10_000, ""):
        stored = await hashing.hash(password)
        assert await hashing.verify(stored, password)
        assert not await hashing.verify(stored, password + "!")
    assert not await hashing.verify("not a hash", "pw")
    assert not await hashing.verify(None, "pw")


# -- a full queue over HTTP -----------------------------------------------------------------


async def test_logins_past_the_queue_get_503_with_retry_after(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = fast_settings(tmp_path / "data", hash_workers=1, hash_queue_max=1)
    started, release = threading.Event(), threading.Event()
    real_verify = lobby.passwords.verify_password

    def slow_verify(*args: Any) -> bool:  # the fault: a hash that takes as long as we say
        started.set()
        if not release.wait(30):
            raise TimeoutError("never released")
        return real_verify(*args)

    async with (
        MasterServer(settings=settings, clock=clock) as server,
        aiohttp.ClientSession() as http,
    ):
        client = ApiClient(server.url, http)
        await client.register("queuequinn")
        monkeypatch.setattr(lobby.passwords, "verify_password", slow_verify)
        gate = server.ctx.accounts.hashing.gate
        creds = {"username": "queuequinn", "password": PASSWORD}

        async def login() -> tuple[int, Any]:
            async with http.post(f"{server.url}/api/auth/login", json=creds) as resp:
                return resp.status, await resp.json()

        hashing_now = asyncio.create_task(login())
        assert await asyncio.to_thread(started.wait, 30)
        queued = asyncio.create_task(login())
        await _until(lambda: gate.waiting == 1, "the second login waits")
        async with http.post(f"{server.url}/api/auth/login", json=creds) as resp:
            body = await resp.json()
            assert resp.status == 503
            assert body["code"] == "unavailable"
            assert body["details"]["retry_after"] > 0
            assert int(resp.headers["Retry-After"]) >= 1
        release.set()
        assert [(await t)[0] for t in (hashing_now, queued)] == [200, 200]
        # a refusal is not a failed password: nothing was locked
        assert (await login())[0] == 200


async def test_an_observer_sees_each_hash_and_verify(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []

    class Recorder:
        @contextlib.contextmanager
        def hashing(self, op: str) -> Iterator[None]:
            seen.append(("enter", op))
            yield
            seen.append(("exit", op))

    hashing = PasswordHashing(fast_settings(tmp_path), Recorder())
    try:
        stored = await hashing.hash("pw-123456")
        assert await hashing.verify(stored, "pw-123456")
        assert not await hashing.verify(None, "pw-123456")  # the dummy: a hash, then a verify
    finally:
        await hashing.close()
    ops = ["hash", "verify", "hash", "verify"]
    assert seen == [(step, op) for op in ops for step in ("enter", "exit")]
