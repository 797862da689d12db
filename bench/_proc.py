"""Child processes for servers under test and load generators, driven over a pipe.

The orchestrating process (``bench.run`` and each benchmark's ``run``) stays synchronous and
never runs an event loop, so children are forked cheaply from it. A child runs
``async def target(ctl: Control, *args)`` on the loop kind it was given; the parent talks to it
with request/reply messages (``Child.call``). Every child is bounded in time: the parent kills
it on ``close()`` and a child whose parent vanished exits on the pipe's EOF.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import os
import resource
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from bench._common import BenchError, loop_factory, rss_bytes

__all__ = ["PROFILE_DIR", "Child", "Control", "Profiler", "raise_nofile", "usage_snapshot"]

#: ``BENCH_PROFILE=<dir>``: children write cProfile stats of their measured windows there.
PROFILE_DIR = os.environ.get("BENCH_PROFILE") or None
#: ``BENCH_PROFILE_CLOCK=cpu``: profile in process CPU time instead of wall time; on a shared
#: machine wall time bills a ``sendto`` that wakes the other process, or a preemption, to
#: whatever function was running.
PROFILE_CPU = os.environ.get("BENCH_PROFILE_CLOCK", "wall") == "cpu"


class Profiler:
    """cProfile of one measured window, written as ``<dir>/<name>-<pid>.prof`` (opt-in)."""

    def __init__(self) -> None:
        self._prof: Any = None

    def start(self) -> None:
        if PROFILE_DIR is None or self._prof is not None:
            return
        import cProfile

        self._prof = cProfile.Profile(time.process_time) if PROFILE_CPU else cProfile.Profile()
        self._prof.enable()

    def stop(self, name: str) -> str | None:
        """Stop and write the stats; the path written (None when not profiling)."""
        if self._prof is None or PROFILE_DIR is None:
            return None
        self._prof.disable()
        os.makedirs(PROFILE_DIR, exist_ok=True)
        path = os.path.join(PROFILE_DIR, f"{name}-{os.getpid()}.prof")
        self._prof.dump_stats(path)
        self._prof = None
        return path


_CTX: Any = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")


def raise_nofile(wanted: int) -> int:
    """Raise this process's open-file limit towards ``wanted``; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def usage_snapshot() -> dict[str, float]:
    """CPU seconds (user+system) of this process, its RSS and a monotonic wall time."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "cpu": ru.ru_utime + ru.ru_stime,
        "process_time": time.process_time(),
        "rss": float(rss_bytes()),
        "wall": time.perf_counter(),
    }


class Control:
    """The child's end of the pipe, usable from its event loop."""

    def __init__(self, conn: multiprocessing.connection.Connection) -> None:
        self._conn = conn
        self.profiler = Profiler()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        # A blocking reader thread: the loop's add_reader would make the pipe non-blocking
        # (uvloop does), and a large message would then be read half-arrived.
        loop = asyncio.get_running_loop()
        self._reader = threading.Thread(target=self._read, args=(loop,), daemon=True)
        self._reader.start()

    def _read(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            try:
                msg = self._conn.recv()
            except (EOFError, OSError):
                msg = ("stop", None)
            try:
                loop.call_soon_threadsafe(self._queue.put_nowait, msg)
            except RuntimeError:  # the loop is closed
                return
            if msg[0] == "stop":
                return

    async def recv(self) -> tuple[str, Any]:
        """The next ``(command, argument)`` from the parent (``("stop", None)`` on EOF)."""
        msg = await self._queue.get()
        return (msg[0], msg[1])

    def send(self, obj: Any) -> None:
        """Send a reply or an announcement to the parent."""
        self._conn.send(obj)

    async def serve(self, handlers: dict[str, Callable[[Any], Awaitable[Any]]]) -> None:
        """Answer commands until "stop". "usage" is built in (see ``usage_snapshot``)."""
        while True:
            cmd, arg = await self.recv()
            if cmd == "stop":
                self.send(("ok", None))
                return
            if cmd == "usage":
                self.send(("ok", usage_snapshot()))
                continue
            if cmd == "profile_start":
                self.profiler.start()
                self.send(("ok", None))
                continue
            if cmd == "profile_stop":
                self.send(("ok", self.profiler.stop(str(arg))))
                continue
            handler = handlers.get(cmd)
            if handler is None:
                self.send(("error", f"unknown command {cmd!r}"))
                continue
            try:
                self.send(("ok", await handler(arg)))
            except Exception:
                self.send(("error", traceback.format_exc()))

    def close(self) -> None:
        """Nothing to undo: the reader thread is a daemon and ends with the process."""


def _child_main(
    conn: multiprocessing.connection.Connection,
    kind: str,
    nofile: int,
    target: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
) -> None:
    if nofile:
        raise_nofile(nofile)

    async def main() -> None:
        ctl = Control(conn)
        try:
            await target(ctl, *args)
        finally:
            ctl.close()

    code = 0
    try:
        with asyncio.Runner(loop_factory=loop_factory(kind)) as runner:
            runner.run(main())
    except BaseException:
        code = 1
        try:
            conn.send(("error", traceback.format_exc()))
        except OSError:
            pass
    finally:
        conn.close()
    os._exit(code)


class Child:
    """A forked child running ``target(ctl, *args)`` on a ``kind`` event loop."""

    def __init__(
        self,
        target: Callable[..., Awaitable[Any]],
        *args: Any,
        kind: str = "asyncio",
        nofile: int = 0,
        name: str = "bench-child",
    ) -> None:
        parent, child = _CTX.Pipe(duplex=True)
        self.name = name
        self._conn = parent
        self._proc = _CTX.Process(
            target=_child_main, args=(child, kind, nofile, target, args), name=name, daemon=True
        )
        self._proc.start()
        child.close()

    @property
    def pid(self) -> int | None:
        pid: int | None = self._proc.pid
        return pid

    def recv(self, timeout: float) -> Any:
        """The next message from the child; raises BenchError on error, death or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"{self.name}: no answer within {timeout:g} s")
            try:
                ready = self._conn.poll(min(left, 0.5))
            except (EOFError, OSError) as exc:
                raise BenchError(f"{self.name}: pipe closed ({exc})") from exc
            if ready:
                try:
                    msg = self._conn.recv()
                except (EOFError, OSError) as exc:
                    raise BenchError(
                        f"{self.name}: died (exit code {self._proc.exitcode})"
                    ) from exc
                if isinstance(msg, tuple) and msg and msg[0] == "error":
                    raise BenchError(f"{self.name} failed:\n{msg[1]}")
                return msg
            if not self._proc.is_alive() and not self._conn.poll(0):
                raise BenchError(f"{self.name}: died (exit code {self._proc.exitcode})")

    def send(self, cmd: str, arg: Any = None) -> None:
        """Send ``(cmd, arg)`` without waiting; collect the reply later with ``reply``."""
        try:
            self._conn.send((cmd, arg))
        except OSError as exc:
            raise BenchError(f"{self.name}: cannot send {cmd!r} ({exc})") from exc

    def reply(self, timeout: float = 60.0) -> Any:
        """The value of the next ``("ok", value)`` reply."""
        msg = self.recv(timeout)
        return msg[1] if isinstance(msg, tuple) and len(msg) == 2 else msg

    def call(self, cmd: str, arg: Any = None, timeout: float = 60.0) -> Any:
        """Send ``(cmd, arg)`` and return the child's reply value."""
        self.send(cmd, arg)
        msg = self.recv(timeout)
        return msg[1] if isinstance(msg, tuple) and len(msg) == 2 else msg

    def profile(self, name: str | None = None) -> None:
        """Start (``name`` None) or stop and write a cProfile of this child (if BENCH_PROFILE)."""
        if PROFILE_DIR is None:
            return
        if name is None:
            self.call("profile_start")
        else:
            self.call("profile_stop", name)

    def close(self, timeout: float = 10.0) -> None:
        """Ask the child to stop; kill it if it does not within ``timeout``."""
        if self._proc.is_alive():
            try:
                self._conn.send(("stop", None))
            except OSError:
                pass
            self._proc.join(timeout)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
        self._conn.close()

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
