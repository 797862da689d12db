"""Password hashing: argon2id in worker processes, never competing with the event loop.

:class:`PasswordHashing` hashes and verifies passwords (argon2-cffi, argon2id) in a
small pool of workers behind a FIFO gate (:class:`HashGate`):

- **At most** ``hash_workers`` **hashes in flight** (default ``max(1, CPUs - 1)``):
  the CPU left over is the event loop's. Each worker runs ``HASH_NICE`` nicer than
  the loop and, with two CPUs or more, off the last CPU the lobby may use; argon2's
  lane threads inherit both. On a 1-CPU machine there is nothing to leave free: one
  worker shares the CPU and its lower priority alone makes it yield to the loop.
- **A burst waits in order**: up to ``hash_queue_max`` more requests wait for a slot,
  first come first served. Beyond that a request is refused at once with
  ``LobbyError(UNAVAILABLE)`` (HTTP 503, JSON body, ``details.retry_after`` an
  estimate in seconds of how long the queue takes to drain): a client would give up
  on a queue minutes long anyway, and a refusal costs nothing. A queued or refused
  request is not a failed login (lockout counts checked passwords only). A waiter
  whose request is cancelled leaves the queue; a hash already running keeps its slot
  until it ends, so the bound holds.
- **Where the workers are** (``hash_pool``): ``"process"`` (the default) runs each as
  its own process; ``"thread"`` as threads of the lobby process (cheap to start: the
  tests use it where the pool is not what they test).

Why processes: argon2-cffi releases the GIL while it hashes, but a hashing *thread*
takes the GIL back for the Python around each hash and, at a lower priority, can be
preempted while it holds it (by argon2's own lane threads, by the rest of a busy
machine): the event loop then waits on a thread the scheduler was told to run last.
A worker process has its own interpreter, so nothing the loop needs is ever held by
it. What crosses the pipe per hash is one JSON line each way (a password, a ~100-byte
hash: microseconds on the loop, against tens of milliseconds of argon2).

How they start: *spawned*, a fresh interpreter running :mod:`lobby._hashworker` by
path, so it inherits nothing of the lobby (*fork* would copy the locks other threads
hold, the listening socket and the database handles; the lobby is an asyncio process
with threads). Not through :mod:`multiprocessing`: its spawn and forkserver methods
re-run the program's ``__main__`` in every worker (a script that starts a lobby
without an ``if __name__ == "__main__"`` guard would start one per worker), refuse
to start inside a daemonic process, forkserver's server outlives
``MasterServer.stop()``, and its workers do not notice that the lobby was killed.
A worker here exits when its stdin closes: at :meth:`PasswordHashing.close` (called
by ``MasterServer.stop()``, which waits for them) or when the lobby dies. It ignores
SIGINT and SIGTERM, so a Ctrl-C or a service manager's stop sent to the whole process
group does not cut a hash in progress during a graceful stop. It stays in the lobby's
session: where the kernel groups scheduling by session (Linux autogroup), a session of
its own would make its lower priority count for nothing against the loop.

Workers start lazily, one per slot, with the first hashes (about 0.1 s once). If a
worker dies (out of memory, killed), the request it held gets 503 and the next one
starts a fresh worker. Where processes cannot be started (no ``sys.executable``,
``OSError``), hashing falls back to threads and says so once in the log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import secrets
import sys
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Literal, Protocol

from argon2.exceptions import InvalidHashError

from lobby import _hashworker
from lobby._hashworker import Params, hash_password, hasher_for, lower_priority, verify_password
from lobby.config import LobbySettings
from protocol.errors import ErrorCode, LobbyError

__all__ = [
    "HASH_NICE",
    "HashGate",
    "HashObserver",
    "HashQueueFullError",
    "PasswordHashing",
    "hash_slots",
    "usable_cpus",
    "worker_cpus",
]

log = logging.getLogger("lobby.passwords")

HASH_NICE = 10
"""How much nicer (lower priority) than the event loop the hashing workers run."""

_WORKER_PATH = str(Path(_hashworker.__file__).resolve())
_Request = tuple[Literal["hash"], Params, str] | tuple[Literal["verify"], Params, str, str]


def usable_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def hash_slots(cpus: int) -> int:
    """Hashes in flight by default: all CPUs but one for the loop, at least one."""
    return max(1, cpus - 1)


def worker_cpus(cpus: Sequence[int]) -> list[int]:
    """The CPUs hashing may use: all but the last when there are several (that one is the
    loop's), else the only one there is."""
    return list(cpus[:-1]) if len(cpus) >= 2 else list(cpus)


class HashQueueFullError(LobbyError):
    """The gate's queue is full (:class:`PasswordHashing` adds a ``retry_after``)."""

    code = ErrorCode.UNAVAILABLE


class HashGate:
    """FIFO admission to ``slots`` concurrent jobs, with at most ``queue_max`` waiting.

    ``await acquire()`` returns once the caller holds a slot (at once if one is free and
    nobody waits), raises :class:`HashQueueFullError` at once if ``queue_max`` callers
    already wait, and ``LobbyError(UNAVAILABLE)`` if the gate closes while it waits.
    ``release()`` hands the slot straight to the oldest waiter. Event-loop only.
    """

    def __init__(self, slots: int, queue_max: int) -> None:
        if slots < 1 or queue_max < 0:
            raise ValueError("a gate needs at least one slot and a queue size >= 0")
        self.slots = slots
        self.queue_max = queue_max
        self._running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def running(self) -> int:
        """Slots held now."""
        return self._running

    @property
    def waiting(self) -> int:
        """Callers waiting for a slot now."""
        return len(self._waiters)

    async def acquire(self) -> None:
        if self._running < self.slots and not self._waiters:
            self._running += 1
            return
        if len(self._waiters) >= self.queue_max:
            raise HashQueueFullError
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over just as the caller gave up
            else:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot changes hands; _running stays
                return
        self._running -= 1

    def close(self) -> None:
        """Refuse everyone still waiting (the lobby is stopping)."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(_stopping())


class HashObserver(Protocol):
    """What watches the hashing (the lobby's metrics): entered around each hash or verify,
    queueing included."""

    def hashing(self, op: Literal["hash", "verify"]) -> AbstractContextManager[None]: ...


class PasswordHashing:
    """argon2id hashing and verification off the event loop (see the module docstring)."""

    def __init__(self, settings: LobbySettings, observer: HashObserver | None = None) -> None:
        self._observer = observer
        self._params: Params = (
            settings.argon2_time_cost,
            settings.argon2_memory_cost,
            settings.argon2_parallelism,
        )
        self._hasher = hasher_for(self._params)  # parsing only (needs_rehash), on the loop
        cpus = usable_cpus()
        self.workers = settings.hash_workers or hash_slots(len(cpus))
        self._cpus = worker_cpus(cpus)
        self.gate = HashGate(self.workers, settings.hash_queue_max)
        self._pool: _Pool
        if settings.hash_pool == "process" and sys.executable:
            self._pool = _ProcessPool(self._cpus)
        else:
            if settings.hash_pool == "process":
                log.warning("password hashing runs in threads: no Python executable to start")
            self._pool = _ThreadPool(self.workers, self._cpus)
        self._jobs: set[asyncio.Task[str | bool]] = set()
        self._closed = False
        self._mean_s = 0.0  # moving average of one job's time, for retry_after
        self._dummy_hash: str | None = None

    @property
    def mode(self) -> Literal["process", "thread"]:
        """Where hashing runs now (``thread`` also after a fall-back)."""
        return self._pool.mode

    def worker_pids(self) -> list[int]:
        """Process ids of the hashing workers alive now (none in thread mode)."""
        return self._pool.pids()

    async def hash(self, password: str) -> str:
        """The argon2id hash of ``password`` (503 ``UNAVAILABLE`` when the queue is full)."""
        with self._observe("hash"):
            result = await self._run(("hash", self._params, password))
        assert isinstance(result, str)  # noqa: S101 - the worker's contract
        return result

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """True if ``password`` matches; ``None`` verifies against a dummy (always False),
        so an unknown username costs what a wrong password costs."""
        if password_hash is None:
            if self._dummy_hash is None:
                self._dummy_hash = await self.hash(secrets.token_urlsafe(16))
            password_hash = self._dummy_hash
            known = False
        else:
            known = True
        with self._observe("verify"):
            ok = await self._run(("verify", self._params, password_hash, password))
        return known and ok is True

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    async def close(self) -> None:
        """Refuse new work and waiters, let the hashes in progress end, stop the workers."""
        self._closed = True
        self.gate.close()
        if self._jobs:
            await asyncio.wait(self._jobs)
        await self._pool.close()

    # -- internals ------------------------------------------------------------------------

    def _observe(self, op: Literal["hash", "verify"]) -> AbstractContextManager[None]:
        return nullcontext() if self._observer is None else self._observer.hashing(op)

    async def _run(self, request: _Request) -> str | bool:
        if self._closed:
            raise _stopping()
        try:
            await self.gate.acquire()
        except HashQueueFullError:
            raise LobbyError(
                "too many logins in progress: try again shortly",
                code=ErrorCode.UNAVAILABLE,
                details={"retry_after": self._retry_after()},
            ) from None
        if self._closed:
            self.gate.release()
            raise _stopping()
        # The job owns the slot until the hash ends, even if its caller stops waiting
        # (a hash cannot be interrupted, and the bound is on hashes running).
        job = asyncio.ensure_future(self._pool.call(request))
        self._jobs.add(job)
        job.add_done_callback(self._finished(asyncio.get_running_loop().time()))
        return await asyncio.shield(job)

    def _finished(self, started: float) -> Callable[[asyncio.Task[str | bool]], None]:
        def done(job: asyncio.Task[str | bool]) -> None:
            self._jobs.discard(job)
            self.gate.release()
            if job.cancelled() or job.exception() is not None:  # retrieved: nobody may wait
                return
            took = asyncio.get_running_loop().time() - started
            self._mean_s = took if self._mean_s == 0.0 else 0.8 * self._mean_s + 0.2 * took

        return done

    def _retry_after(self) -> float:
        queued = self.gate.waiting + self.gate.running
        return round(math.ceil(queued / self.workers) * max(self._mean_s, 0.05), 3)


class _Pool(Protocol):
    """Where hashes run: ``call`` one request (the gate bounds how many at once)."""

    @property
    def mode(self) -> Literal["process", "thread"]: ...

    def pids(self) -> list[int]: ...

    async def call(self, request: _Request) -> str | bool: ...

    async def close(self) -> None: ...


class _ThreadPool:
    """Workers as threads of the lobby process, nicer and off the loop's CPU."""

    mode: Literal["process", "thread"] = "thread"

    def __init__(self, workers: int, cpus: Sequence[int]) -> None:
        self._executor = ThreadPoolExecutor(
            max_workers=workers,
            thread_name_prefix="lobby-argon2",
            initializer=lower_priority,
            initargs=(HASH_NICE, list(cpus)),
        )

    def pids(self) -> list[int]:
        return []

    async def call(self, request: _Request) -> str | bool:
        loop = asyncio.get_running_loop()
        if request[0] == "hash":
            return await loop.run_in_executor(self._executor, hash_password, *request[1:])
        return await loop.run_in_executor(self._executor, verify_password, *request[1:])

    async def close(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)


class _ProcessPool:
    """One worker process per slot, started on demand, reused while it is healthy."""

    def __init__(self, cpus: Sequence[int]) -> None:
        self._args = [str(HASH_NICE), ",".join(str(c) for c in cpus)]
        self._cpus = cpus
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._fallback: _ThreadPool | None = None

    @property
    def mode(self) -> Literal["process", "thread"]:
        return "process" if self._fallback is None else "thread"

    def pids(self) -> list[int]:
        return sorted(w.pid for w in self._all)

    async def call(self, request: _Request) -> str | bool:
        if self._fallback is not None:
            return await self._fallback.call(request)
        if self._idle:
            worker = self._idle.pop()
        else:
            try:
                worker = await _Worker.start(self._args)
            except OSError as exc:
                log.warning("password hashing runs in threads: cannot start a worker (%s)", exc)
                self._fallback = _ThreadPool(max(1, len(self._all)), self._cpus)
                return await self._fallback.call(request)
            self._all.add(worker)
        try:
            result = await worker.call(request)
        except _FailedAnswerError:
            self._idle.append(worker)  # a whole answer was read: the worker is fine
            raise
        except BaseException as exc:
            # Dead, or cancelled with an answer half-read: its pipe is out of step for good.
            self._all.discard(worker)
            await worker.close()
            if isinstance(exc, _WorkerDiedError):
                log.error("password hashing worker %d died (exit %s)", worker.pid, worker.exit)
            raise
        self._idle.append(worker)
        return result

    async def close(self) -> None:
        workers, self._all, self._idle = list(self._all), set(), []
        await asyncio.gather(*(w.close() for w in workers))
        if self._fallback is not None:
            await self._fallback.close()


class _Worker:
    """One hashing process: one request line in, one answer line out."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self.pid = proc.pid

    @classmethod
    async def start(cls, args: Sequence[str]) -> _Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-P",
            _WORKER_PATH,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def call(self, request: _Request) -> str | bool:
        stdin, stdout = self._proc.stdin, self._proc.stdout
        assert stdin is not None and stdout is not None  # noqa: S101 - both are pipes
        try:
            stdin.write(json.dumps(request).encode() + b"\n")
            await stdin.drain()
            line = await stdout.readline()
        except (ConnectionError, OSError):
            line = b""
        if not line:
            raise _WorkerDiedError(
                "password hashing restarted: try again",
                code=ErrorCode.UNAVAILABLE,
                details={"retry_after": 1},
            )
        reply = json.loads(line)
        result = reply.get("ok")
        if not isinstance(result, str | bool):
            raise _FailedAnswerError(f"password hashing failed: {reply.get('error')}")
        return result

    @property
    def exit(self) -> int | None:
        """Its exit code once it has ended."""
        return self._proc.returncode

    async def close(self) -> None:
        """Close its stdin (it exits after the hash in progress); kill it if it lingers."""
        if self._proc.stdin is not None and not self._proc.stdin.is_closing():
            self._proc.stdin.close()
        try:
            await asyncio.wait_for(self._proc.wait(), 10.0)
        except TimeoutError:
            self._proc.kill()
            await self._proc.wait()


class _WorkerDiedError(LobbyError):
    """A worker ended without answering (the request gets 503; the next starts a new one)."""


class _FailedAnswerError(LobbyError):
    """A worker answered with an error (a bug: the lobby answers 500)."""


def _stopping() -> LobbyError:
    return LobbyError("the lobby is stopping", code=ErrorCode.UNAVAILABLE)
