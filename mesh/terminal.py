"""Terminal plumbing shared by the modes of ``python -m mesh`` (LAN and lobby).

* :class:`Output` prints each event as a text line, or as one JSON object per
  line with ``--json`` (for scripts and tests), flushed at once;
* :func:`stop_on_signals` is an event SIGINT and SIGTERM set;
* :func:`command_loop` hands each input line to the mode until it asks to
  quit, the input ends or the stop event is set. Input is read without
  blocking the event loop: through the loop's pipe reader where the stream
  allows it (a pipe, a terminal), else by a daemon thread (a regular file);
* :data:`LOG_IDS` puts this peer's id on every log line once a mode knows it
  (``--log-format text|json``, :mod:`protocol.logformat`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

from protocol.logformat import StaticIds

__all__ = ["LOG_IDS", "Output", "command_loop", "stop_on_signals"]

LOG_IDS = StaticIds()
"""The log filter of ``python -m mesh``: a mode sets ``peer_id`` when its node has one."""


class Output:
    """Prints events as text lines or JSON objects (one per line, flushed)."""

    def __init__(self, stream: TextIO, *, as_json: bool) -> None:
        self._stream = stream
        self._json = as_json

    def emit(self, event: str, text: str, **fields: Any) -> None:
        """Print ``text``, or ``{"event": event, **fields}`` as JSON."""
        line = json.dumps({"event": event, **fields}, default=str) if self._json else text
        self._stream.write(line + "\n")
        self._stream.flush()


def stop_on_signals() -> asyncio.Event:
    """An event set on SIGINT or SIGTERM (where the running loop takes signal handlers)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    return stop


async def command_loop(
    stdin: TextIO, stop: asyncio.Event, on_line: Callable[[str], Awaitable[bool]]
) -> None:
    """``await on_line(line)`` for each line of ``stdin`` until it returns False,
    the input ends or ``stop`` is set."""
    lines, reader = await _lines(stdin)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        while True:
            getter = asyncio.ensure_future(lines.get())
            await asyncio.wait({getter, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                return
            line = getter.result()
            if line is None or not await on_line(line):
                return
    finally:
        stopped.cancel()
        if reader is not None:
            reader.cancel()


async def _lines(stream: TextIO) -> tuple[asyncio.Queue[str | None], asyncio.Task[None] | None]:
    """Lines of ``stream`` in a queue (None at the end), and the task reading them, if any."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    reader = asyncio.StreamReader()
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stream)
    except (ValueError, OSError):
        # a regular file (or no fileno): read it in a daemon thread
        def pump() -> None:
            with contextlib.suppress(OSError, ValueError, RuntimeError):
                for line in stream:
                    loop.call_soon_threadsafe(queue.put_nowait, line)
            with contextlib.suppress(RuntimeError):  # the loop may be closed by then
                loop.call_soon_threadsafe(queue.put_nowait, None)

        threading.Thread(target=pump, name="stdin", daemon=True).start()
        return queue, None

    async def pipe() -> None:
        while line := await reader.readline():
            queue.put_nowait(line.decode("utf-8", "replace"))
        queue.put_nowait(None)

    return queue, asyncio.create_task(pipe(), name="stdin")
